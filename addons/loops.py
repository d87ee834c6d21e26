"""Loops addon: halts a model that repeats itself, and a tool called over and over.

At `request` it adds the loop stages to the exchange (the responses addon runs them on the
stream, or on the whole answer): `protocol.loops.LoopStage` on the answer's text and thinking,
and `protocol.tool_guard.ToolLoopStage` on its tool calls. Tool calls count as "in a row" while
the agent goes on with tool results; a request that ends with a new user message starts over. A halted stream is ended cleanly in
the client's protocol with a note and the upstream connection is closed (the responses addon
does that when the stage sets `outcome = "loop_halted"`); the usage row says `loop_halted`.

Settings: the environment (`LOOP_DETECTION_*`, `TOOL_LOOP_*`), then these options (mitm.conf
or --set; unset options leave the environment's value), then `!/set(loop-detection=...)` per
session for the text guard.
"""

from __future__ import annotations

import logging
from typing import Optional

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from addons.config import Config
from protocol.canonical import ChatResponse, ToolResultPart
from protocol.exchange import AnswerCheck, Exchange, exchange_of
from protocol.loops import (
    LoopMatch,
    LoopSettings,
    LoopStage,
    ToolLoopSettings,
    ToolLoopTracker,
    check_response,
)
from protocol.tool_guard import ToolLoopStage, at_risk, guard_answer

logger = logging.getLogger(__name__)

# Each option overrides the environment variable of the same name in capitals; text values,
# read like the variables ("true"/"false", numbers), so `--set` and mitm.conf both work.
_OPTIONS: dict[str, str] = {
    "loop_detection_enabled": "Halt answers that repeat themselves (default true).",
    "loop_detection_min_pattern_length": "Shortest repeated block, in characters.",
    "loop_detection_max_pattern_length": "Longest repeated block, in characters.",
    "loop_detection_min_repetitions": "Back-to-back repetitions that make a loop.",
    "loop_detection_buffer_size": "Characters of recent text watched.",
    "tool_loop_detection_enabled": "Stop a tool called with the same arguments over and over "
    "(default true).",
    "tool_loop_max_repeats": "Identical tool calls in a row that make a loop (default 4).",
    "tool_loop_ttl_seconds": "Seconds within which those calls count (default 120).",
    "tool_loop_mode": "break, or chance_then_break (warn once first).",
}


class Loops:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.text = LoopSettings()
        self.tools = ToolLoopSettings()
        self.tracker = ToolLoopTracker(self.tools)

    def load(self, loader: Loader) -> None:
        for name, help_text in _OPTIONS.items():
            loader.add_option(name, Optional[str], None, help_text)  # type: ignore[arg-type]  # noqa: UP045

    def configure(self, updated: set[str]) -> None:
        if not updated & {"llm_env_file", *_OPTIONS}:
            return
        env = dict(self.config.env)
        for name in _OPTIONS:
            value = getattr(ctx.options, name)
            if value is not None:
                env[name.upper()] = str(value)
        try:
            text = LoopSettings.from_env(env)
            tools = ToolLoopSettings.from_env(env)
        except ValueError as e:
            raise exceptions.OptionsError(f"loop detection: {e}") from None
        self.text = text
        if tools != self.tools:
            self.tools = tools
            self.tracker = ToolLoopTracker(tools)

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None or ex.front.endpoint != "chat":
            return
        session = ex.session
        enabled = self.text.enabled
        if session is not None and session.loop_detection is not None:
            enabled = session.loop_detection
        if enabled:
            ex.stages.append(LoopStage(self.text, on_halt=lambda m: _halted(flow, ex, m)))
            ex.answer_checks.append(
                AnswerCheck(
                    lambda answer: self._check_text(flow, ex, answer), self.text.shortest_loop
                )
            )
        sid = ex.front.session_id
        if self.tools.enabled and sid and ex.request.tools:
            if not _after_tool_result(ex):
                # a new user turn: the calls of the agent's earlier run are not "in a row"
                self.tracker.forget(sid)
            hold = at_risk(self.tracker, sid)
            ex.stages.append(ToolLoopStage(self.tracker, sid, hold=hold))
            ex.answer_checks.append(
                AnswerCheck(lambda answer: guard_answer(answer, self.tracker, sid))
            )

    def _check_text(self, flow: http.HTTPFlow, ex: Exchange, answer: ChatResponse) -> ChatResponse:
        checked, match = check_response(answer, self.text)
        if match is not None:
            _halted(flow, ex, match)
        return checked


def _after_tool_result(ex: Exchange) -> bool:
    """Whether the request carries tool results back (the model goes on with its tools)."""
    messages = ex.request.messages
    if not messages:
        return False
    last = messages[-1]
    return last.role == "tool" or any(isinstance(p, ToolResultPart) for p in last.content)


def _halted(flow: http.HTTPFlow, ex: Exchange, match: LoopMatch) -> None:
    ex.outcome = "loop_halted"
    logger.warning(
        "%s: loop detected (a %d-character block repeated %d times); answer halted",
        flow.request.path,
        len(match.block),
        match.repetitions,
    )
