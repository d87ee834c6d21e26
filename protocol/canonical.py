"""The canonical form every wire protocol converts to and from.

A request from any client protocol is parsed into a `ChatRequest`; a backend's answer is parsed
into a `ChatResponse` (whole) or into stream events (`Start`, `TextDelta`, ...). Conversion from
protocol A to protocol B is always A -> canonical -> B.

`extras` fields hold what one protocol has and the canonical form does not (Anthropic's
`cache_control` on a block, OpenAI's `logprobs`, unknown fields): they are rendered back only
when the target protocol is the one they came from (`ChatRequest.source`), so a same-protocol
round trip is lossless and a converted one drops them.

Stream events are plain slotted dataclasses, not pydantic models: they are made per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ProtocolName = Literal["openai", "anthropic", "gemini", "responses"]
Role = Literal["user", "assistant", "tool", "system"]
StopReason = Literal["end", "max_tokens", "tool_use", "stop", "filtered", "loop_halted", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class TextPart(_Model):
    type: Literal["text"] = "text"
    text: str
    extras: dict[str, Any] = Field(default_factory=dict)


class ImagePart(_Model):
    """An image: either a URL (`url`) or inline base64 `data` with its `media_type`."""

    type: Literal["image"] = "image"
    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class ToolCallPart(_Model):
    """A call the assistant made. `arguments` is the JSON text of the arguments object.

    `signature` carries an opaque provider token tied to the call (Gemini's thoughtSignature).
    """

    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: str = "{}"
    signature: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)


class ToolResultPart(_Model):
    """The result of a tool call, sent back by the client.

    `name` is the tool's name when the source protocol says it (Gemini needs it; renderers look it
    up from the matching call in history when it is missing).
    """

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str | None = None
    content: list[TextPart | ImagePart] = Field(default_factory=list)
    is_error: bool = False
    extras: dict[str, Any] = Field(default_factory=dict)


# ThinkingPart.extras key: the backend protocol that made the part's signature, when the part
# came back through a client protocol that cannot say so itself (a Responses client's reasoning
# item); a codec renders a signature only for the provider that made it.
SIGNATURE_PROVIDER = "signature_provider"


class ThinkingPart(_Model):
    """Reasoning text. `signature` is Anthropic's block signature or Gemini's thoughtSignature.

    `redacted` marks Anthropic's `redacted_thinking` (then `text` holds its opaque `data`).
    """

    type: Literal["thinking"] = "thinking"
    text: str = ""
    signature: str | None = None
    redacted: bool = False
    extras: dict[str, Any] = Field(default_factory=dict)


class OpaquePart(_Model):
    """A block only its own protocol understands (Anthropic `document`, Gemini `executableCode`).

    `data` is the block exactly as it came; it is rendered back only to `protocol` and dropped
    (with a debug log) when converting to another protocol.
    """

    type: Literal["opaque"] = "opaque"
    protocol: ProtocolName
    data: dict[str, Any]


Part = Annotated[
    TextPart | ImagePart | ToolCallPart | ToolResultPart | ThinkingPart | OpaquePart,
    Field(discriminator="type"),
]


class Message(_Model):
    role: Role
    content: list[Part] = Field(default_factory=list)
    name: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict)

    def text(self) -> str:
        """The concatenated text parts of this message."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class Tool(_Model):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    extras: dict[str, Any] = Field(default_factory=dict)


class ToolChoice(_Model):
    """`auto`, `none`, `required` (any tool), or `tool` (the tool `name`)."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    parallel: bool | None = None


class Reasoning(_Model):
    """Reasoning control: an effort level and/or a token budget, and whether thoughts come back."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    budget_tokens: int | None = None
    include_thoughts: bool | None = None
    enabled: bool | None = None


class ChatRequest(_Model):
    source: ProtocolName
    model: str
    system: list[TextPart] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] = Field(default_factory=list)
    reasoning: Reasoning | None = None
    stream: bool = False
    include_usage: bool = False
    extras: dict[str, Any] = Field(default_factory=dict)

    def system_text(self) -> str:
        return "\n\n".join(p.text for p in self.system)


class Usage(_Model):
    """Token counts, normalised to one meaning whatever the protocol reported.

    `input_tokens` is the whole prompt, cached parts included (`cached_tokens` read from cache
    and `cache_creation_tokens` written to it are subsets of it); `output_tokens` is everything
    generated, reasoning included (`reasoning_tokens` is a subset of it). Codecs convert on
    parse and render: Anthropic reports input without cache reads/writes, Gemini reports output
    without thoughts.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None

    def merged(self, newer: Usage | None) -> Usage:
        """This usage with every field `newer` reports replacing ours."""
        if newer is None:
            return self
        data = self.model_dump()
        data.update({k: v for k, v in newer.model_dump().items() if v is not None})
        return Usage(**data)


class ChatResponse(_Model):
    source: ProtocolName
    id: str
    model: str
    parts: list[Part] = Field(default_factory=list)
    stop_reason: StopReason = "end"
    stop_sequence: str | None = None
    usage: Usage = Field(default_factory=Usage)
    extras: dict[str, Any] = Field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Stream events. `index` is the canonical block index: the decoder numbers the response's blocks
# (text, thinking, tool call) 0, 1, 2 ... in the order they start; deltas name their block.
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Start:
    id: str
    model: str
    usage: Usage | None = None


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str | None = None
    redacted: bool = False


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str
    signature: str | None = None


@dataclass(slots=True)
class ToolArgsDelta:
    index: int
    fragment: str


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class Finish:
    stop_reason: StopReason = "end"
    usage: Usage | None = None
    stop_sequence: str | None = None


@dataclass(slots=True)
class Error:
    message: str
    status: int = 500
    kind: str = "api_error"


Event = Start | TextDelta | ThinkingDelta | ToolCallStart | ToolArgsDelta | BlockStop | Finish | Error


@dataclass(slots=True)
class ResponseAccumulator:
    """Rebuilds a whole `ChatResponse` from stream events (for usage, loops, live views)."""

    source: ProtocolName
    id: str = ""
    model: str = ""
    blocks: dict[int, Any] = field(default_factory=dict)
    args: dict[int, list[str]] = field(default_factory=dict)
    texts: dict[int, list[str]] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)  # blocks that saw their BlockStop
    stop_reason: StopReason = "end"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    finished: bool = False

    def feed(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            if event.index not in self.blocks:
                self.blocks[event.index] = "text"
                self.texts[event.index] = []
            self.texts[event.index].append(event.text)
        elif isinstance(event, ToolArgsDelta):
            self.args.setdefault(event.index, []).append(event.fragment)
        elif isinstance(event, ThinkingDelta):
            block = self.blocks.get(event.index)
            if not isinstance(block, ThinkingPart):
                block = self.blocks[event.index] = ThinkingPart(redacted=event.redacted)
                self.texts[event.index] = []
            self.texts[event.index].append(event.text)
            if event.signature:
                block.signature = event.signature
        elif isinstance(event, ToolCallStart):
            self.blocks[event.index] = ToolCallPart(
                id=event.id, name=event.name, signature=event.signature
            )
        elif isinstance(event, BlockStop):
            self.stopped.add(event.index)
        elif isinstance(event, Start):
            self.id, self.model = event.id, event.model
            self.usage = self.usage.merged(event.usage)
        elif isinstance(event, Finish):
            self.stop_reason = event.stop_reason
            self.stop_sequence = event.stop_sequence
            self.usage = self.usage.merged(event.usage)
            self.finished = True

    def response(self) -> ChatResponse:
        parts: list[Any] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if block == "text":
                parts.append(TextPart(text="".join(self.texts[index])))
            elif isinstance(block, ThinkingPart):
                block.text = "".join(self.texts[index])
                parts.append(block)
            elif isinstance(block, ToolCallPart):
                block.arguments = "".join(self.args.get(index, [])) or "{}"
                parts.append(block)
        return ChatResponse(
            source=self.source,
            id=self.id,
            model=self.model,
            parts=parts,
            stop_reason=self.stop_reason,
            stop_sequence=self.stop_sequence,
            usage=self.usage,
        )
