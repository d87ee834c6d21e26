"""The `Exchange`: the one object every addon shares about one LLM request.

It lives in `flow.metadata["llm"]` for LLM flows only (no key: not an LLM flow, leave it alone).
The gateway creates it; commands and redaction edit `request` in place (and set
`request_edited`); routing fills `route`; stream watchers add stages to `stages`; the response
converter fills `usage`, `outcome` and the timings; a whole answer relayed as it came is read
into canonical form only when something asks for it (`answer_of`). Nothing here knows
mitmproxy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from protocol.canonical import ChatRequest, ChatResponse, Event, ProtocolName, Usage
from protocol.sessions import Session

if TYPE_CHECKING:
    from protocol.backends import Backend
    from protocol.redaction import Redactor

Arrival = Literal["gateway", "intercept"]
Endpoint = Literal["chat", "count_tokens"]
Outcome = Literal["pending", "ok", "error", "loop_halted", "local"]


class Stage(Protocol):
    """A step of the stream pipeline: sees canonical events, may change or add to them."""

    def feed(self, event: Event) -> list[Event]: ...

    def close(self) -> list[Event]: ...


@dataclass(frozen=True, slots=True)
class AnswerCheck:
    """A check of a whole (non-streamed) answer: `run` returns it, or a changed copy. An answer
    whose body holds fewer characters of strings in all than `min_text` passes without being
    read (a loop needs that much text); 0: every answer is read and checked."""

    run: Callable[[ChatResponse], ChatResponse]
    min_text: int = 0


@dataclass(slots=True)
class Front:
    protocol: ProtocolName
    arrival: Arrival = "gateway"
    endpoint: Endpoint = "chat"
    session_id: str | None = None
    client_stream: bool = False


@dataclass(slots=True)
class Attempt:
    backend: str
    model: str
    key_id: str | None = None
    failure: str | None = None  # why it failed, when it did


@dataclass(slots=True)
class RoutePlan:
    attempts: list[Attempt] = field(default_factory=list)
    current: int = 0

    @property
    def active(self) -> Attempt | None:
        return self.attempts[self.current] if self.current < len(self.attempts) else None


@dataclass(slots=True)
class Exchange:
    front: Front
    request: ChatRequest
    raw: dict[str, Any]  # the client's body as parsed JSON (forwarded as is when protocols match)
    requested_model: str
    route: RoutePlan = field(default_factory=RoutePlan)
    stages: list[Stage] = field(default_factory=list)
    answer_checks: list[AnswerCheck] = field(default_factory=list)  # of a whole answer
    usage: Usage = field(default_factory=Usage)
    usage_source: Literal["upstream", "counted", "none"] = "none"
    outcome: Outcome = "pending"
    status: int | None = None
    error: str | None = None
    request_edited: bool = False
    session: Session | None = None
    answer: ChatResponse | None = None  # the backend's answer, whole or reassembled from a stream
    # a whole answer relayed as it came, not read yet: `answer_of` reads it when asked
    unread_answer: Callable[[], ChatResponse | None] | None = field(default=None, repr=False)
    recorded: bool = False  # the usage row was written
    redactions: int = 0  # secrets replaced in the prompt and the answer
    answer_scrubber: Redactor | None = None  # configured keys to scrub out of the answer
    redactor: Redactor | None = None  # what the prompt was redacted with (for displays)
    client_line: str = ""  # the client's request line, e.g. "POST /v1/chat/completions"
    client_model: str = ""  # the model as the client named it (answers name it so too)
    project: str | None = None  # the `x-project` header (a session's `!/set(project=)` wins)
    session_header: str | None = None  # `x-session-id` or an agent's own session header
    client_key: str | None = field(default=None, repr=False)  # for the session id; never shown
    resuming: bool = False  # a failed connection is being replaced by the next attempt
    backend_protocol: ProtocolName | None = None
    backends: Mapping[str, Backend] = field(default_factory=dict)  # those the plan names
    client_headers: tuple[tuple[bytes, bytes], ...] | None = None  # as the client sent them
    started: float = field(default_factory=time.monotonic)
    first_byte: float | None = None
    last_activity: float | None = None  # the latest upstream stream chunk
    finished: float | None = None

    @property
    def converted(self) -> bool:
        """True when the backend speaks another protocol than the client."""
        return self.backend_protocol is not None and self.backend_protocol != self.front.protocol

    def summary(self) -> dict[str, Any]:
        """What is worth keeping of the exchange in a saved flow: plain data, no keys, no body."""
        return {
            "front": self.front.protocol,
            "arrival": self.front.arrival,
            "endpoint": self.front.endpoint,
            "session_id": self.front.session_id,
            "stream": self.front.client_stream,
            "requested_model": self.requested_model,
            "attempts": [
                {"backend": a.backend, "model": a.model, "key_id": a.key_id, "failure": a.failure}
                for a in self.route.attempts
            ],
            "usage": self.usage.model_dump(exclude_none=True),
            "usage_source": self.usage_source,
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
        }

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        # mitmproxy deep-copies flow.metadata to save, duplicate or back up a flow; a copy of a
        # live exchange (timers, stream state) is neither wanted nor serialisable: the copy is
        # its plain summary, which is what saved flows (`mitmdump -w`) then hold.
        return self.summary()


def answer_of(ex: Exchange) -> ChatResponse | None:
    """The exchange's answer in canonical form, read now if it was relayed unread (None: no
    answer, or one that cannot be read)."""
    if ex.answer is None and ex.unread_answer is not None:
        read, ex.unread_answer = ex.unread_answer, None
        ex.answer = read()
    return ex.answer


def exchange_of(metadata: dict[str, Any]) -> Exchange | None:
    """The live exchange of a flow (None for non-LLM flows and for copies of saved flows)."""
    ex = metadata.get("llm")
    return ex if isinstance(ex, Exchange) else None
