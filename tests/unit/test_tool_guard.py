"""The tool-call loop guard on answers: streams (held calls) and whole answers."""

from __future__ import annotations

from protocol.canonical import (
    BlockStop,
    ChatResponse,
    Event,
    Finish,
    TextDelta,
    TextPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
)
from protocol.loops import ToolLoopSettings, ToolLoopTracker
from protocol.tool_guard import ToolLoopStage, at_risk, guard_answer

ARGS = '{"city": "Paris"}'


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def call_events(index: int = 0, args: str = ARGS) -> list[Event]:
    return [
        ToolCallStart(index, f"call_{index}", "get_weather"),
        ToolArgsDelta(index, args[:7]),
        ToolArgsDelta(index, args[7:]),
        BlockStop(index),
        Finish("tool_use"),
    ]


def run(stage: ToolLoopStage, events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        out.extend(stage.feed(event))
    return out + stage.close()


def tracker(mode: str = "break", clock: Clock | None = None) -> ToolLoopTracker:
    settings = ToolLoopSettings(max_repeats=3, ttl_seconds=60, mode=mode)  # type: ignore[arg-type]
    return ToolLoopTracker(settings, clock=clock or Clock())


def test_calls_pass_unchanged_until_the_limit_then_the_call_becomes_text() -> None:
    t = tracker()
    for _ in range(2):
        events = call_events()
        assert run(ToolLoopStage(t, "s", hold=at_risk(t, "s")), events) == events
    assert at_risk(t, "s")  # the next identical call is the 3rd in a row
    out = run(ToolLoopStage(t, "s", hold=True), call_events())
    assert not any(isinstance(e, ToolCallStart) for e in out)
    text = "".join(e.text for e in out if isinstance(e, TextDelta))
    assert "get_weather" in text and "3" in text
    assert isinstance(out[-1], Finish) and out[-1].stop_reason == "end"


def test_key_order_in_the_arguments_does_not_matter_and_another_call_resets() -> None:
    t = tracker()
    run(ToolLoopStage(t, "s", hold=False), call_events(args='{"a": 1, "b": 2}'))
    run(ToolLoopStage(t, "s", hold=False), call_events(args='{"b": 2, "a": 1}'))
    assert at_risk(t, "s")
    run(ToolLoopStage(t, "s", hold=True), call_events(args='{"a": 2}'))  # different: forwarded
    assert not at_risk(t, "s")


def test_chance_then_break_warns_once_then_breaks() -> None:
    t = tracker("chance_then_break")
    for _ in range(2):
        run(ToolLoopStage(t, "s", hold=False), call_events())
    warned = run(ToolLoopStage(t, "s", hold=True), call_events())
    assert any(isinstance(e, ToolCallStart) for e in warned)  # the call still goes through
    assert "get_weather" in "".join(e.text for e in warned if isinstance(e, TextDelta))
    broken = run(ToolLoopStage(t, "s", hold=True), call_events())
    assert not any(isinstance(e, ToolCallStart) for e in broken)


def test_sessions_are_apart_and_old_calls_expire() -> None:
    clock = Clock()
    t = tracker(clock=clock)
    for _ in range(2):
        run(ToolLoopStage(t, "a", hold=False), call_events())
    assert not at_risk(t, "b")
    clock.now = 61  # past the TTL
    assert not at_risk(t, "a")


def test_a_whole_answer_is_guarded_the_same_way() -> None:
    t = tracker()
    answer = ChatResponse(
        source="openai",
        id="r",
        model="m",
        parts=[TextPart(text="checking"), ToolCallPart(id="c", name="get_weather", arguments=ARGS)],
        stop_reason="tool_use",
    )
    assert guard_answer(answer, t, "s") is answer
    assert guard_answer(answer, t, "s") is answer
    guarded = guard_answer(answer, t, "s")
    assert guarded is not answer and guarded.stop_reason == "end"
    assert [type(p) for p in guarded.parts] == [TextPart, TextPart]
    assert "get_weather" in guarded.parts[1].text  # type: ignore[union-attr]


def test_a_call_cut_off_by_a_broken_stream_is_let_through() -> None:
    t = tracker()
    stage = ToolLoopStage(t, "s", hold=True)
    held = call_events()[:2]
    assert run(stage, held) == held
