"""What the test upstream answers: the backend-neutral `Reply` a test scripts, and its parts.

A `Reply` says what the model "produced" (text, thinking, tool calls, usage, finish) and how
the answer travels (error status, delays, chunking, broken connections). Each backend renders
it in its own wire format (see `render.py`); nothing here knows any API.

Usage convention (the same numbers every backend reports, each in its own way):
`input` is every prompt token including the cached ones, `output` every generated token
including reasoning, `reasoning` the part of `output` spent thinking, `cached` the part of
`input` read from the prompt cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_TEXT = "Hello from the test upstream."

# Backend-neutral finish reasons; anything else is sent to the client verbatim.
FINISH_STOP = "stop"
FINISH_LENGTH = "length"
FINISH_TOOL_CALLS = "tool_calls"
FINISH_CONTENT_FILTER = "content_filter"


class Usage(NamedTuple):
    input: int = 12
    output: int = 8
    reasoning: int = 0
    cached: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model makes; `id` is generated per backend when None."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class Reply:
    """One scripted answer.

    `text=None` means the default answer (`DEFAULT_TEXT`) unless there are tool calls;
    `text=""` means no text at all. `finish=None` picks the natural reason (tool calls when
    there are some, else stop); the neutral names `stop`, `length`, `tool_calls`,
    `content_filter` are translated per backend, any other value is sent as it is.
    `status >= 400` answers with that API's error JSON (`error_message`, `error_type`
    override the defaults) and the extra `headers` (e.g. `{"retry-after": "2"}`).

    Transport: `delay_before_headers` applies to every answer; the rest to streams only:
    `chunk_delay` between events (or raw pieces), `text_chunks`/`args_chunks` deltas per text
    and per tool-call arguments, `split_bytes` rewrites the SSE body as raw writes of that
    many bytes, `close_midstream` aborts the connection half way, `midstream_error` sends the
    API's in-stream error event half way and ends. `interleave_tool_args`/`args_at_end` shape
    OpenAI tool-call chunks. `omit_usage` drops usage everywhere (including where the real
    API always sends it: Anthropic, OpenRouter). On the OpenAI Responses API `midstream_error`
    ends the stream with `response.failed` (`error_type` as its code), or with a bare `error`
    event when `responses_error_event` is set.
    """

    text: str | None = None
    thinking: str | None = None
    thinking_signature: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | tuple[int, ...] = Usage()
    finish: str | None = None
    model: str | None = None  # the model named in the answer; default: the requested one
    # errors
    status: int = 200
    error_message: str | None = None
    error_type: str | None = None
    error_details: list[Any] | None = None  # Gemini's error `details` (e.g. RetryInfo)
    headers: dict[str, str] = field(default_factory=dict)
    # transport
    delay_before_headers: float = 0.0
    chunk_delay: float = 0.0
    text_chunks: int = 3
    args_chunks: int = 3
    split_bytes: int | None = None
    interleave_tool_args: bool = False
    args_at_end: bool = False
    omit_usage: bool = False
    close_midstream: bool = False
    reset: bool = False  # drop the connection before any answer (after delay_before_headers)
    midstream_error: str | None = None  # the API's in-stream error event, half way through
    # OpenAI Responses: send `midstream_error` as a bare `error` event, not `response.failed`
    responses_error_event: bool = False

    @property
    def answer_text(self) -> str:
        """The text actually sent ("" when none)."""
        if self.text is None:
            return "" if self.tool_calls else DEFAULT_TEXT
        return self.text

    @property
    def usage_numbers(self) -> Usage:
        return self.usage if isinstance(self.usage, Usage) else Usage(*self.usage)

    @property
    def neutral_finish(self) -> str:
        if self.finish is not None:
            return self.finish
        return FINISH_TOOL_CALLS if self.tool_calls else FINISH_STOP

    @property
    def is_error(self) -> bool:
        return self.status >= 400


def split_text(text: str, pieces: int) -> list[str]:
    """`text` cut into `pieces` nearly equal consecutive parts (fewer when it is shorter)."""
    if not text:
        return []
    count = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), count)
    parts: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts
