"""The tool-call loop guard on an answer: a call repeated too often is not forwarded.

`ToolLoopStage` (a stream pipeline stage) holds each tool call's events until the call is
complete (its `BlockStop`), then asks the session's `ToolLoopTracker` (`protocol.loops`):
- ok: the held events go on, unchanged;
- warn (`chance_then_break`, the first time): the call goes on, followed by a text block with
  the warning, so the model reads it in the next turn;
- break: the call is replaced by a text block explaining the loop, and a `tool_use` finish
  becomes `end` when no other call of that answer went on.
`guard_answer` does the same to a whole `ChatResponse`. Calls are held only while they stream
(their arguments), which a client cannot act on before they are complete anyway.

Holding needs the stream encoded from events (not relayed byte for byte), so a stage is made
with `hold=True` (`rewrites`) only when the session is one call away from the limit
(`at_risk`); otherwise it only counts the calls as they pass.
"""

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
from protocol.loops import (
    ToolLoopTracker,
    ToolLoopVerdict,
    tool_loop_message,
    tool_loop_warning,
)


def at_risk(tracker: ToolLoopTracker, session_id: str) -> bool:
    """Whether the session's next call may be the one that repeats too often."""
    return tracker.run_length(session_id) + 1 >= tracker.settings.max_repeats


class ToolLoopStage:
    __slots__ = (
        "tracker",
        "session_id",
        "rewrites",
        "breaks",
        "_held",
        "_args",
        "_forwarded",
        "_max",
    )

    def __init__(self, tracker: ToolLoopTracker, session_id: str, *, hold: bool = True) -> None:
        self.tracker = tracker
        self.session_id = session_id
        self.rewrites = hold  # the pipeline must encode from events (no byte passthrough)
        self.breaks = 0  # calls not forwarded
        self._held: dict[int, list[Event]] = {}
        self._args: dict[int, list[str]] = {}
        self._forwarded = 0
        self._max = -1

    def feed(self, event: Event) -> list[Event]:
        index = getattr(event, "index", None)
        if index is not None and index > self._max:
            self._max = index
        if isinstance(event, ToolCallStart):
            self._held[event.index] = [event]
            self._args[event.index] = []
            return [] if self.rewrites else [event]
        if isinstance(event, ToolArgsDelta) and event.index in self._held:
            self._held[event.index].append(event)
            self._args[event.index].append(event.fragment)
            return [] if self.rewrites else [event]
        if isinstance(event, BlockStop) and event.index in self._held:
            if not self.rewrites:
                self._count(event)
                return [event]
            return self._decide(event)
        if (
            isinstance(event, Finish)
            and self.breaks
            and not self._forwarded
            and event.stop_reason == "tool_use"
        ):
            return [Finish("end", event.usage, event.stop_sequence)]
        return [event]

    def close(self) -> list[Event]:
        # calls never completed (the stream broke): let them through as they were
        out: list[Event] = []
        if self.rewrites:
            for events in self._held.values():
                out.extend(events)
        self._held.clear()
        return out

    def _count(self, stop: BlockStop) -> None:
        start = self._held.pop(stop.index)[0]
        args = "".join(self._args.pop(stop.index))
        assert isinstance(start, ToolCallStart)
        self.tracker.observe(self.session_id, start.name, args)
        self._forwarded += 1

    def _decide(self, stop: BlockStop) -> list[Event]:
        held = self._held.pop(stop.index)
        args = "".join(self._args.pop(stop.index))
        start = held[0]
        assert isinstance(start, ToolCallStart)
        verdict = self.tracker.observe(self.session_id, start.name, args)
        if verdict == ToolLoopVerdict.BREAK:
            self.breaks += 1
            repeats = self.tracker.run_length(self.session_id)
            text = tool_loop_message(start.name, repeats)
            return [TextDelta(stop.index, text), BlockStop(stop.index)]
        self._forwarded += 1
        if verdict == ToolLoopVerdict.WARN:
            self._max += 1
            note = self._max
            repeats = self.tracker.run_length(self.session_id)
            warning = tool_loop_warning(start.name, repeats)
            return [*held, stop, TextDelta(note, warning), BlockStop(note)]
        return [*held, stop]


def guard_answer(resp: ChatResponse, tracker: ToolLoopTracker, session_id: str) -> ChatResponse:
    """`resp` with each looping tool call replaced as the stage does (or `resp` itself)."""
    if not any(isinstance(p, ToolCallPart) for p in resp.parts):
        return resp
    parts: list = []
    changed = forwarded = False
    for part in resp.parts:
        if not isinstance(part, ToolCallPart):
            parts.append(part)
            continue
        verdict = tracker.observe(session_id, part.name, part.arguments)
        if verdict == ToolLoopVerdict.BREAK:
            changed = True
            repeats = tracker.run_length(session_id)
            parts.append(TextPart(text=tool_loop_message(part.name, repeats)))
            continue
        forwarded = True
        parts.append(part)
        if verdict == ToolLoopVerdict.WARN:
            changed = True
            parts.append(
                TextPart(text=tool_loop_warning(part.name, tracker.run_length(session_id)))
            )
    if not changed:
        return resp
    stop = resp.stop_reason
    if stop == "tool_use" and not forwarded:
        stop = "end"
    return resp.model_copy(update={"parts": parts, "stop_reason": stop})
