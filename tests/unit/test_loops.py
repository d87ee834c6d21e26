"""Loop detection: the text detector on the corpus and against a naive reference, the stream
stage's events, the whole-answer check, the tool-call loop tracker, and the settings."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

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
    ToolCallPart,
    ToolCallStart,
    Usage,
)
from protocol.loops import (
    LoopDetector,
    LoopMatch,
    LoopSettings,
    LoopStage,
    ToolLoopSettings,
    ToolLoopTracker,
    ToolLoopVerdict,
    check_response,
    note_text,
    tool_loop_message,
    tool_loop_warning,
)

CORPUS = Path(__file__).resolve().parent.parent / "data" / "loops"
NO_LOOP = sorted((CORPUS / "no_loop").glob("*.txt"))
LOOP = sorted((CORPUS / "loop").glob("*.txt"))
DEFAULTS = LoopSettings()


def chunks(text: str, seed: int | None) -> list[str]:
    """`text` in one piece (seed None) or in seeded random pieces of 1 to 40 characters."""
    if seed is None:
        return [text]
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(text):
        size = rng.randint(1, 40)
        out.append(text[pos : pos + size])
        pos += size
    return out


def stream(path: Path, seed: int | None) -> list[Event]:
    """The events that carry a corpus file: thinking_* files as thinking, others as text."""
    text = path.read_text(encoding="utf-8")
    thinking = path.name.startswith("thinking_")
    events: list[Event] = [Start("msg_1", "model-x", Usage(input_tokens=120))]
    for piece in chunks(text, seed):
        events.append(ThinkingDelta(0, piece) if thinking else TextDelta(0, piece))
    events += [BlockStop(0), Finish("end", Usage(input_tokens=120, output_tokens=900))]
    return events


def run_stage(stage: LoopStage, events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        out.extend(stage.feed(event))
    out.extend(stage.close())
    return out


def delivered_text(events: list[Event], note_index: int | None = None) -> str:
    """The text and thinking the client got, without the note."""
    return "".join(
        e.text for e in events if isinstance(e, TextDelta | ThinkingDelta) and e.index != note_index
    )


def max_run_of(block: str, text: str) -> int:
    """The largest number of copies of `block` back to back anywhere in `text`."""
    runs = [len(m.group(0)) // len(block) for m in re.finditer(f"(?:{re.escape(block)})+", text)]
    return max(runs, default=0)


# ----------------------------------------------------------------------------------------------
# The corpus
# ----------------------------------------------------------------------------------------------


def test_corpus_is_there_and_substantial() -> None:
    assert len(NO_LOOP) >= 8 and len(LOOP) >= 4
    for path in NO_LOOP + LOOP:
        assert len(path.read_text(encoding="utf-8")) >= 2000, path.name
    late = (CORPUS / "loop" / "late_loop_after_5000.txt").read_text(encoding="utf-8")
    assert late.index("I will now write that comparison script") > 5000


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
@pytest.mark.parametrize("path", NO_LOOP, ids=lambda p: p.name)
def test_no_loop_corpus_passes_untouched(path: Path, seed: int | None) -> None:
    halts: list[LoopMatch] = []
    stage = LoopStage(DEFAULTS, on_halt=halts.append)
    events = stream(path, seed)
    out = run_stage(stage, events)
    assert out == events
    assert not stage.halted and stage.match is None and halts == []


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
@pytest.mark.parametrize("path", LOOP, ids=lambda p: p.name)
def test_loop_corpus_is_halted_within_two_repetitions(path: Path, seed: int | None) -> None:
    text = path.read_text(encoding="utf-8")
    halts: list[LoopMatch] = []
    stage = LoopStage(DEFAULTS, on_halt=halts.append)
    out = run_stage(stage, stream(path, seed))

    assert stage.halted and stage.match is not None and halts == [stage.match]
    match = stage.match
    note = out[-3]
    assert isinstance(note, TextDelta) and note.text == "\n\n" + note_text(match)
    assert out[-2] == BlockStop(note.index) and note.index == 1
    assert out[-1] == Finish("loop_halted", Usage(input_tokens=120))

    got = delivered_text(out, note.index)
    assert text.startswith(got) and len(got) < len(text)
    reps = DEFAULTS.min_repetitions
    assert reps - 1 <= max_run_of(match.block, got) <= reps + 2
    assert match.repetitions == reps
    # the reported block really is what the file repeats
    assert max_run_of(match.block, text) >= reps


def test_loop_corpus_cut_does_not_depend_on_chunking() -> None:
    for path in LOOP:
        cuts = {
            len(delivered_text(run_stage(LoopStage(), stream(path, s)), 1)) for s in (None, 5, 6)
        }
        assert len(cuts) == 1, path.name


# ----------------------------------------------------------------------------------------------
# The detector
# ----------------------------------------------------------------------------------------------

SMALL = [  # small blocks and buffers, so that the naive reference stays quick
    LoopSettings(min_pattern_length=20, max_pattern_length=120, min_repetitions=3, buffer_size=400),
    LoopSettings(min_pattern_length=24, max_pattern_length=90, min_repetitions=2, buffer_size=200),
    LoopSettings(min_pattern_length=30, max_pattern_length=100, min_repetitions=4, buffer_size=400),
    LoopSettings(min_pattern_length=8, max_pattern_length=60, min_repetitions=3, buffer_size=200),
]
WORDS = [
    "the",
    "a",
    "cache",
    "key",
    "request",
    "retry",
    "worker",
    "queue",
    "table",
    "row",
    "index",
    "we",
    "should",
    "check",
    "if",
    "then",
    "it",
    "is",
    "not",
    "in",
    "on",
    "for",
    "and",
    "value",
    "error",
    "timeout",
    "config",
    "file",
    "path",
    "user",
    "session",
    "token",
    "model",
    "stream",
]


def wordy(block: str, min_words: int) -> bool:
    """Reference: the different words of the shortest unit of `block`, read round the cycle."""
    size = len(block)
    unit = next(
        block[:q] for q in range(1, size + 1) if size % q == 0 and block == block[:q] * (size // q)
    )
    cyclic = unit + unit
    words: set[str] = set()
    for m in re.finditer(r"[^\W\d_]+", cyclic):
        if m.start() > 0 and m.end() < len(cyclic) and m.end() - m.start() <= len(unit):
            words.add(m.group(0).lower())
    if not words and re.search(r"[^\W\d_]", unit):
        return min_words <= 1  # all letters: one word going round
    return len(words) >= min_words


def reference(text: str, s: LoopSettings) -> tuple[int, int] | None:
    """Naive: the first end position at which some block is repeated enough, and its length."""
    n = s.min_repetitions
    for i in range(1, len(text) + 1):
        for p in range(s.min_pattern_length, s.max_pattern_length + 1):
            if n * p > i:
                break
            seg = text[i - n * p : i]
            if seg[p:] == seg[:-p] and wordy(seg[:p], s.min_unit_words):
                return i, p
    return None


def random_text(rng: random.Random) -> str:
    """Sentences, numbers, runs of a unit that is not words ("null, ", "0x00, ", "ha "), and
    now and then a unit of words, or of words and such runs, said 2 to 6 times."""
    parts: list[str] = []
    size = 0
    while size < 1000:
        r = rng.random()
        filler = rng.choice(["null, ", "0x00, ", "ha ", "no no ", "0, ", "-", "| "])
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        if r < 0.35:
            part = words + rng.choice([". ", ", ", "\n", " "])
        elif r < 0.5:
            part = filler * rng.randint(3, 40)
        elif r < 0.6:
            part = str(rng.randint(0, 10 ** rng.randint(1, 30))) + rng.choice([" ", "\n"])
        elif r < 0.8:
            part = (words + rng.choice([". ", " ", "\n", ", ", ""])) * rng.randint(2, 6)
        else:
            unit = filler * rng.randint(1, 8) + words + " "
            part = unit * rng.randint(1, 5) + filler * rng.randint(0, 20)
        parts.append(part)
        size += len(part)
    return "".join(parts)


def feed_all(detector: LoopDetector, pieces: list[str]) -> tuple[int, LoopMatch] | None:
    """The stream position where the detector said loop, and its match."""
    pos = 0
    for piece in pieces:
        match = detector.feed(piece)
        if match is not None:
            return pos + match.offset_in_chunk, match
        pos += len(piece)
    return None


@pytest.mark.parametrize("seed", range(80))
def test_detector_agrees_with_a_naive_reference(seed: int) -> None:
    settings = SMALL[seed % len(SMALL)]
    text = random_text(random.Random(seed))
    expected = reference(text, settings)
    for split in (None, seed + 100):
        found = feed_all(LoopDetector(settings), chunks(text, split))
        if expected is None:
            assert found is None
            continue
        assert found is not None
        at, match = found
        assert (at, len(match.block)) == expected
        assert match.block in text[at - 2 * len(match.block) : at]  # a rotation of the block
        assert match.repetitions == settings.min_repetitions


def test_detector_finds_loops_in_most_random_texts() -> None:
    # guard against the reference test passing because nothing is ever found
    found = sum(
        reference(random_text(random.Random(seed)), SMALL[seed % len(SMALL)]) is not None
        for seed in range(80)
    )
    assert found >= 40


def test_a_period_set_aside_as_non_words_can_loop_later() -> None:
    digits = "1234567890 1234567890 1234567890 12\n"  # 36 characters, no words
    words = "We should look at the queue again!!\n"  # 36 characters
    for lead in range(200):  # many alignments with the checkpoints
        text = "x" * lead + " Intro.\n" + digits * 3 + "Other words here.\n" + words * 3 + "end"
        found = feed_all(LoopDetector(), [text])
        assert found is not None and found[1].block == words, lead


def test_cut_keeps_exactly_the_threshold_repetitions() -> None:
    intro = "Here is my answer to the question about caching in the proxy layer.\n"
    sentence = "I am going to look at the cache invalidation code once more. "
    text = intro + sentence * 10
    found = feed_all(LoopDetector(), [text])
    assert found is not None
    at, match = found
    assert match.block == sentence and match.repetitions == 3
    assert text[:at] == intro + sentence * 3


def test_short_unit_is_reported_as_a_block_of_min_length() -> None:
    text = "Starting the deploy now, watching the rollout.\n" + "Try again. " * 30
    found = feed_all(LoopDetector(), chunks(text, 9))
    assert found is not None
    at, match = found
    assert match.block == "Try again. " * 3  # the smallest whole number of units >= 32 chars
    assert match.repetitions == 3
    assert text[:at].endswith("Try again. " * 9)
    # one repeated word is never a loop, however often
    assert feed_all(LoopDetector(), ["Starting now.\n" + "Retrying. " * 300]) is None


@pytest.mark.parametrize(
    "filler",
    [
        "-" * 80 + "\n",
        " " * 64,
        "|---|---|---|\n",
        "0, 0, 0, 0, 0, 0, 0, 0,\n",
        "0x00, 0x00, 0x00, 0x00,\n",
        "null, null, null, null, ",
        "= = = = = = = = = = = = \n",
        "ha ha ha ha ",
        "12:00:00.000 | ",
    ],
)
def test_units_without_two_words_never_loop(filler: str) -> None:
    text = "Some introduction before the data starts.\n" + filler * 400
    assert feed_all(LoopDetector(), chunks(text, 3)) is None
    assert feed_all(LoopDetector(), [text]) is None


def test_repetition_that_is_not_back_to_back_is_no_loop() -> None:
    refrain = "And the river keeps on rolling to the sea.\n"
    places = ["levee", "bridge", "mill", "station", "chapel", "orchard", "harbour", "market"]
    times = ["rain", "snow", "dawn", "dusk", "fog", "heat", "storm", "night"]
    text = "".join(
        f"We walked along the {place} in the {time},\n{refrain}"
        for place in places
        for time in times
    )
    assert text.count(refrain) == 64
    assert feed_all(LoopDetector(), chunks(text, 4)) is None


def test_two_copies_are_no_loop_but_three_are() -> None:
    para = (
        "The deploy failed because the migration took a lock on the orders table while the old "
        "version was still serving traffic, so every checkout request waited for it.\n\n"
    )
    assert feed_all(LoopDetector(), ["Summary:\n\n" + para * 2]) is None
    assert feed_all(LoopDetector(), ["Summary:\n\n" + para * 3]) is not None


def test_block_longer_than_max_is_not_looked_for() -> None:
    settings = LoopSettings(max_pattern_length=100, buffer_size=300)
    block = " ".join(f"step {i} of the plan is to check item {i}." for i in range(8)) + "\n"
    assert len(block) > 100
    assert feed_all(LoopDetector(settings), chunks(block * 6, 7)) is None
    assert feed_all(LoopDetector(), chunks(block * 6, 7)) is not None


def test_loop_right_after_a_long_run_of_non_words() -> None:
    loop = "Checking the null values in the export again. "
    for filler in ["null, ", "0x00, ", "ha ha ", "false, "]:
        head = '{"values": [' + filler * 3000
        found = feed_all(LoopDetector(), chunks(head + loop * 5, 13))
        assert found is not None
        at, match = found
        # the repetition begins as early as the text before it ends like the block does
        shared = len(os.path.commonprefix([head[::-1], loop[::-1]]))
        assert match.block == loop and at == len(head) + 3 * len(loop) - shared


def test_long_stream_before_the_loop() -> None:
    rng = random.Random(3)
    prose = "".join(
        " ".join(rng.choice(WORDS) for _ in range(12)) + f" (item {i}).\n" for i in range(5000)
    )
    loop = "Let me check the configuration file one more time before answering. "
    found = feed_all(LoopDetector(), chunks(prose + loop * 5, 11))
    assert found is not None
    at, match = found
    assert match.block == loop and at == len(prose) + 3 * len(loop)


def test_detector_starts_afresh_after_a_match() -> None:
    detector = LoopDetector()
    loop = "We need to look at the retry policy for the worker queue again. "
    assert detector.feed(loop * 3) is not None
    assert detector.feed(loop) is None  # the copies before the match are forgotten
    assert detector.feed(loop) is None
    assert detector.feed(loop) is not None


def test_disabled_detector_finds_nothing() -> None:
    text = "I will try again now. " * 100
    assert feed_all(LoopDetector(LoopSettings(enabled=False)), [text]) is None
    assert LoopDetector().feed("") is None


def test_note_text() -> None:
    match = LoopMatch("Line one of the block.\nLine two of the block that goes on", 3, 0)
    assert note_text(match) == (
        '[loop detected: "Line one of the block.\\nLine two of the b" repeated 3 times; '
        "response halted]"
    )
    assert note_text(LoopMatch("short block here ", 4, 0)) == (
        '[loop detected: "short block here " repeated 4 times; response halted]'
    )


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------

LOOP_SENTENCE = "I should double-check the database migration before continuing. "


def test_stage_passes_events_through_unchanged() -> None:
    stage = LoopStage()
    events: list[Event] = [
        Start("m", "x"),
        ThinkingDelta(0, "Let me think about the question."),
        ThinkingDelta(0, "", "sig"),
        BlockStop(0),
        TextDelta(1, "Here is the answer."),
        BlockStop(1),
        ToolCallStart(2, "call_1", "read_file"),
        ToolArgsDelta(2, '{"path": "a.txt"}'),
        BlockStop(2),
        Finish("tool_use", Usage(output_tokens=5)),
    ]
    for event in events:
        out = stage.feed(event)
        assert out == [event] and out[0] is event
    assert stage.close() == []
    assert not stage.halted


def test_stage_halts_a_text_loop() -> None:
    halts: list[LoopMatch] = []
    stage = LoopStage(on_halt=halts.append)
    intro = "Sure. First, some context on the migration.\n"
    assert stage.feed(Start("m", "x", Usage(input_tokens=50))) == [
        Start("m", "x", Usage(input_tokens=50))
    ]
    assert stage.feed(TextDelta(0, intro)) == [TextDelta(0, intro)]
    assert stage.feed(TextDelta(0, LOOP_SENTENCE * 2)) == [TextDelta(0, LOOP_SENTENCE * 2)]
    out = stage.feed(TextDelta(0, LOOP_SENTENCE * 2 + "tail"))
    match = stage.match
    assert match is not None and halts == [match]
    assert match.block == LOOP_SENTENCE and match.repetitions == 3
    assert out == [
        TextDelta(0, LOOP_SENTENCE),
        BlockStop(0),
        TextDelta(1, "\n\n" + note_text(match)),
        BlockStop(1),
        Finish("loop_halted", Usage(input_tokens=50)),
    ]
    assert stage.halted
    assert stage.feed(TextDelta(0, "more")) == []
    assert stage.feed(BlockStop(0)) == []
    assert stage.feed(Finish("end")) == []
    assert stage.close() == []
    assert halts == [match]


def test_stage_halts_a_thinking_loop_and_numbers_the_note_after_every_block() -> None:
    stage = LoopStage()
    stage.feed(Start("m", "x"))
    stage.feed(TextDelta(3, "An earlier text block with a higher index."))
    stage.feed(BlockStop(3))
    out: list[Event] = []
    for _ in range(4):
        out = stage.feed(ThinkingDelta(4, LOOP_SENTENCE))
        if stage.halted:
            break
    match = stage.match
    assert match is not None
    assert out == [
        ThinkingDelta(4, LOOP_SENTENCE),
        BlockStop(4),
        TextDelta(5, "\n\n" + note_text(match)),
        BlockStop(5),
        Finish("loop_halted", None),
    ]


def test_stage_keeps_text_and_thinking_apart_but_continues_across_blocks() -> None:
    stage = LoopStage()
    events: list[Event] = [
        ThinkingDelta(0, LOOP_SENTENCE * 2),
        BlockStop(0),
        TextDelta(1, LOOP_SENTENCE * 2),  # 4 in a row overall, but 2 of each kind
        BlockStop(1),
    ]
    assert run_stage(stage, events) == events
    assert not stage.halted
    out = stage.feed(TextDelta(2, LOOP_SENTENCE))  # a third copy in a later text block
    assert stage.halted
    assert out[0] == TextDelta(2, LOOP_SENTENCE)
    assert out[1] == BlockStop(2)


def test_stage_closes_every_open_block() -> None:
    stage = LoopStage()
    stage.feed(ToolCallStart(0, "call_1", "search"))
    stage.feed(ToolArgsDelta(0, '{"q": "x"}'))
    out = stage.feed(TextDelta(1, "Intro line.\n" + LOOP_SENTENCE * 3))
    assert [e for e in out if isinstance(e, BlockStop)] == [
        BlockStop(0),
        BlockStop(1),
        BlockStop(2),
    ]
    assert out[-2:] == [BlockStop(2), Finish("loop_halted", None)]


def test_stage_ignores_redacted_thinking_and_can_be_disabled() -> None:
    stage = LoopStage()
    for _ in range(5):
        assert stage.feed(ThinkingDelta(0, LOOP_SENTENCE, None, True)) == [
            ThinkingDelta(0, LOOP_SENTENCE, None, True)
        ]
    off = LoopStage(LoopSettings(enabled=False))
    for _ in range(5):
        assert off.feed(TextDelta(0, LOOP_SENTENCE)) == [TextDelta(0, LOOP_SENTENCE)]
    assert not stage.halted and not off.halted


def test_stage_usage_merges_start_and_later_reports() -> None:
    stage = LoopStage()
    stage.feed(Start("m", "x", Usage(input_tokens=10, cached_tokens=4)))
    stage.feed(Start("m", "x", Usage(input_tokens=12)))
    out = stage.feed(TextDelta(0, LOOP_SENTENCE * 3))
    assert out[-1] == Finish("loop_halted", Usage(input_tokens=12, cached_tokens=4))


# ----------------------------------------------------------------------------------------------
# Whole answers
# ----------------------------------------------------------------------------------------------


def response(*parts: object) -> ChatResponse:
    return ChatResponse(
        source="anthropic", id="r1", model="m", parts=list(parts), stop_reason="tool_use",
        usage=Usage(input_tokens=5, output_tokens=7),
    )  # fmt: skip


def test_check_response_truncates_a_loop() -> None:
    intro = "Here is the plan.\n"
    resp = response(
        ThinkingPart(text="Short reasoning.", signature="sig"),
        TextPart(text=intro + LOOP_SENTENCE * 8),
        ToolCallPart(id="c1", name="run", arguments="{}"),
    )
    halted, match = check_response(resp, LoopSettings())
    assert match is not None and match.block == LOOP_SENTENCE and match.repetitions == 3
    assert halted.stop_reason == "loop_halted"
    assert halted.parts == [
        ThinkingPart(text="Short reasoning.", signature="sig"),
        TextPart(text=intro + LOOP_SENTENCE * 3),
        TextPart(text="\n\n" + note_text(match)),
    ]
    assert halted.usage == resp.usage and halted.id == "r1"
    assert len(resp.parts) == 3  # the original is left alone


def test_check_response_thinking_loop_drops_the_rest() -> None:
    resp = response(ThinkingPart(text=LOOP_SENTENCE * 5), TextPart(text="Answer."))
    halted, match = check_response(resp)
    assert match is not None
    assert halted.parts == [
        ThinkingPart(text=LOOP_SENTENCE * 3),
        TextPart(text="\n\n" + note_text(match)),
    ]


def test_check_response_without_loop_returns_the_same_answer() -> None:
    text = (CORPUS / "no_loop" / "markdown_table.txt").read_text(encoding="utf-8")
    resp = response(TextPart(text=text))
    assert check_response(resp) == (resp, None)
    assert check_response(resp)[0] is resp
    looped = response(TextPart(text=LOOP_SENTENCE * 5))
    assert check_response(looped, LoopSettings(enabled=False)) == (looped, None)


# ----------------------------------------------------------------------------------------------
# Tool-call loops
# ----------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


OK, WARN, BREAK = ToolLoopVerdict.OK, ToolLoopVerdict.WARN, ToolLoopVerdict.BREAK


def test_break_mode_breaks_at_the_fourth_identical_call() -> None:
    clock = FakeClock()
    tracker = ToolLoopTracker(ToolLoopSettings(), clock)
    verdicts = []
    for _ in range(6):
        verdicts.append(tracker.observe("s1", "read_file", '{"path": "a.py"}'))
        clock.now += 5
    assert verdicts == [OK, OK, OK, BREAK, BREAK, BREAK]
    assert tracker.run_length("s1") == 4


def test_arguments_compare_as_json_with_keys_sorted() -> None:
    tracker = ToolLoopTracker(ToolLoopSettings(max_repeats=3), FakeClock())
    assert tracker.observe("s", "grep", '{"pattern": "x", "path": "src"}') == OK
    assert tracker.observe("s", "grep", '{"path":"src","pattern":"x"}') == OK
    assert tracker.observe("s", "grep", '{\n  "path": "src",\n  "pattern": "x"\n}') == BREAK


def test_invalid_json_compares_as_the_raw_string() -> None:
    tracker = ToolLoopTracker(ToolLoopSettings(max_repeats=2), FakeClock())
    assert tracker.observe("s", "shell", "ls -la {") == OK
    assert tracker.observe("s", "shell", "ls -la  {") == OK  # a different string
    assert tracker.observe("s", "shell", "ls -la  {") == BREAK


def test_a_different_call_resets_the_run() -> None:
    tracker = ToolLoopTracker(ToolLoopSettings(max_repeats=3), FakeClock())
    calls = [
        ("read", '{"p": 1}'),
        ("read", '{"p": 1}'),
        ("read", '{"p": 2}'),  # other arguments
        ("read", '{"p": 1}'),
        ("read", '{"p": 1}'),
        ("list", '{"p": 1}'),  # other tool
        ("read", '{"p": 1}'),
        ("read", '{"p": 1}'),
        ("read", '{"p": 1}'),
    ]
    verdicts = [tracker.observe("s", name, args) for name, args in calls]
    assert verdicts == [OK] * 8 + [BREAK]


def test_calls_older_than_the_ttl_drop_out_of_the_run() -> None:
    clock = FakeClock()
    tracker = ToolLoopTracker(ToolLoopSettings(max_repeats=4, ttl_seconds=120), clock)
    verdicts = []
    for _ in range(8):
        verdicts.append(tracker.observe("s", "fetch", '{"url": "https://example.com"}'))
        clock.now += 50  # only three calls ever fall inside 120 s
    assert verdicts == [OK] * 8
    assert tracker.run_length("s") == 2  # the calls 50 and 100 s ago
    clock.now += 100  # the newest call is now 150 s old
    assert tracker.run_length("s") == 0
    for _ in range(3):
        tracker.observe("s", "fetch", '{"url": "https://example.com"}')
        clock.now += 10
    assert tracker.observe("s", "fetch", '{"url": "https://example.com"}') == BREAK


def test_sessions_are_counted_apart() -> None:
    tracker = ToolLoopTracker(ToolLoopSettings(max_repeats=2), FakeClock())
    assert tracker.observe("a", "t", "{}") == OK
    assert tracker.observe("b", "t", "{}") == OK
    assert tracker.observe("a", "t", "") == BREAK  # empty arguments are the empty object
    assert tracker.observe("c", "t", "{}") == OK


def test_chance_then_break_warns_once_per_call_then_breaks() -> None:
    tracker = ToolLoopTracker(
        ToolLoopSettings(max_repeats=3, mode="chance_then_break"), FakeClock()
    )
    seq = [tracker.observe("s", "run_tests", '{"k": "x"}') for _ in range(5)]
    assert seq == [OK, OK, WARN, BREAK, BREAK]
    tracker.observe("s", "edit", '{"f": 1}')  # the model changes course, then goes back
    seq = [tracker.observe("s", "run_tests", '{"k": "x"}') for _ in range(3)]
    assert seq == [OK, OK, BREAK]  # warned once already for this call in this session
    seq = [tracker.observe("s", "run_tests", '{"k": "y"}') for _ in range(3)]
    assert seq == [OK, OK, WARN]  # another call gets its own warning
    seq = [tracker.observe("other", "run_tests", '{"k": "x"}') for _ in range(3)]
    assert seq == [OK, OK, WARN]


def test_disabled_tracker_never_breaks() -> None:
    tracker = ToolLoopTracker(ToolLoopSettings(enabled=False), FakeClock())
    assert {tracker.observe("s", "t", "{}") for _ in range(10)} == {OK}


def test_idle_sessions_expire_and_the_count_is_capped() -> None:
    clock = FakeClock()
    tracker = ToolLoopTracker(
        ToolLoopSettings(max_repeats=2, ttl_seconds=60, max_sessions=2), clock
    )
    tracker.observe("a", "t", "{}")
    tracker.observe("b", "t", "{}")
    tracker.observe("c", "t", "{}")  # over the cap: "a", the least recently used, goes
    assert len(tracker) == 2
    assert tracker.observe("a", "t", "{}") == OK  # a fresh run
    assert tracker.observe("c", "t", "{}") == BREAK
    clock.now += 61
    tracker.observe("d", "t", "{}")
    assert len(tracker) == 1


def test_tool_loop_texts() -> None:
    message = tool_loop_message("read_file", 4)
    assert "read_file" in message and "4 times" in message
    assert "not forwarded" in message and "approach" in message
    warning = tool_loop_warning("read_file", 4)
    assert "read_file" in warning and "4 times" in warning and warning != message


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


def test_settings_defaults_from_an_empty_environment() -> None:
    assert LoopSettings.from_env({}) == LoopSettings()
    assert ToolLoopSettings.from_env({}) == ToolLoopSettings()
    tool = ToolLoopSettings()
    assert (tool.enabled, tool.max_repeats, tool.ttl_seconds, tool.mode) == (
        True,
        4,
        120.0,
        "break",
    )


def test_settings_from_environment() -> None:
    env = {
        "LOOP_DETECTION_ENABLED": "off",
        "LOOP_DETECTION_MIN_PATTERN_LENGTH": "12",
        "LOOP_DETECTION_MAX_PATTERN_LENGTH": " 400 ",
        "LOOP_DETECTION_MIN_REPETITIONS": "4",
        "LOOP_DETECTION_BUFFER_SIZE": "2000",
        "TOOL_LOOP_DETECTION_ENABLED": "No",
        "TOOL_LOOP_MAX_REPEATS": "6",
        "TOOL_LOOP_TTL_SECONDS": "30.5",
        "TOOL_LOOP_MODE": "chance_then_break",
    }
    s = LoopSettings.from_env(env)
    assert (s.enabled, s.min_pattern_length, s.max_pattern_length) == (False, 12, 400)
    assert (s.min_repetitions, s.buffer_size) == (4, 2000)
    t = ToolLoopSettings.from_env(env)
    assert (t.enabled, t.max_repeats, t.ttl_seconds, t.mode) == (
        False,
        6,
        30.5,
        "chance_then_break",
    )


@pytest.mark.parametrize(
    "raw, value",
    [("1", True), ("YES", True), ("on", True), ("0", False), ("False", False), ("", True)],
)
def test_bool_spellings(raw: str, value: bool) -> None:
    assert LoopSettings.from_env({"LOOP_DETECTION_ENABLED": raw}).enabled is value
    assert ToolLoopSettings.from_env({"TOOL_LOOP_DETECTION_ENABLED": raw}).enabled is value


@pytest.mark.parametrize(
    "env, name",
    [
        ({"LOOP_DETECTION_ENABLED": "maybe"}, "LOOP_DETECTION_ENABLED"),
        ({"LOOP_DETECTION_MIN_PATTERN_LENGTH": "ten"}, "LOOP_DETECTION_MIN_PATTERN_LENGTH"),
        ({"LOOP_DETECTION_MIN_PATTERN_LENGTH": "0"}, "LOOP_DETECTION_MIN_PATTERN_LENGTH"),
        ({"LOOP_DETECTION_MIN_REPETITIONS": "1"}, "LOOP_DETECTION_MIN_REPETITIONS"),
        ({"LOOP_DETECTION_MAX_PATTERN_LENGTH": "10"}, "LOOP_DETECTION_MAX_PATTERN_LENGTH"),
        ({"LOOP_DETECTION_BUFFER_SIZE": "1000"}, "LOOP_DETECTION_BUFFER_SIZE"),
        ({"LOOP_DETECTION_BUFFER_SIZE": "4k"}, "LOOP_DETECTION_BUFFER_SIZE"),
    ],
)
def test_bad_loop_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LoopSettings.from_env(env)


@pytest.mark.parametrize(
    "env, name",
    [
        ({"TOOL_LOOP_DETECTION_ENABLED": "sure"}, "TOOL_LOOP_DETECTION_ENABLED"),
        ({"TOOL_LOOP_MAX_REPEATS": "1"}, "TOOL_LOOP_MAX_REPEATS"),
        ({"TOOL_LOOP_MAX_REPEATS": "four"}, "TOOL_LOOP_MAX_REPEATS"),
        ({"TOOL_LOOP_TTL_SECONDS": "-5"}, "TOOL_LOOP_TTL_SECONDS"),
        ({"TOOL_LOOP_TTL_SECONDS": "soon"}, "TOOL_LOOP_TTL_SECONDS"),
        ({"TOOL_LOOP_TTL_SECONDS": "nan"}, "TOOL_LOOP_TTL_SECONDS"),
        ({"TOOL_LOOP_MODE": "warn"}, "TOOL_LOOP_MODE"),
    ],
)
def test_bad_tool_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ToolLoopSettings.from_env(env)


def test_settings_check_their_own_consistency() -> None:
    with pytest.raises(ValueError):
        LoopSettings(min_pattern_length=50, max_pattern_length=40)
    with pytest.raises(ValueError):
        LoopSettings(max_pattern_length=1000, min_repetitions=3, buffer_size=2999)
    with pytest.raises(ValueError):
        ToolLoopSettings(mode="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("unit", ["tok ", "null, ", "0, ", "."])
def test_a_run_of_one_word_from_the_start_of_the_stream_is_no_loop(unit: str) -> None:
    """(bench/loops.py --relay found such a run slow: ~70 us per delta, now ~2.)"""
    detector = LoopDetector(LoopSettings())
    assert all(detector.feed(unit) is None for _ in range(3000))
    wordy = "The build failed again because the linker could not find libssl. "
    assert any(detector.feed(wordy) is not None for _ in range(5))  # and it still sees loops
