"""What every wire protocol module offers, and the table of them by name.

Each protocol module (`openai_chat`, `anthropic`, `gemini`) exposes the same plain functions and
two classes; `codec(name)` returns them bundled as a `Codec`. Nothing here knows mitmproxy.

Errors: a request body the protocol would reject raises `ProtocolError` (the gateway answers it
with status 400 in the client's protocol). Canonical error kinds, mapped by each `render_error`
to the protocol's own type names: `invalid_request` (400), `authentication` (401),
`permission` (403), `not_found` (404), `rate_limit` (429), `api_error` (500), `bad_gateway`
(502), `overloaded` (503/529), `timeout` (504).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.canonical import ChatRequest, ChatResponse, Event, ProtocolName, Usage


class ProtocolError(ValueError):
    """A request body that the protocol's real API would reject (answered with 400)."""


ERROR_KIND_BY_STATUS: dict[int, str] = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    408: "timeout",
    413: "invalid_request",
    422: "invalid_request",
    429: "rate_limit",
    500: "api_error",
    502: "bad_gateway",
    503: "overloaded",
    504: "timeout",
    529: "overloaded",
}


def error_kind(status: int) -> str:
    return ERROR_KIND_BY_STATUS.get(status, "invalid_request" if status < 500 else "api_error")


class StreamDecoder(Protocol):
    """Upstream bytes (split anywhere) to canonical events. `close()` at the end of the body."""

    def feed(self, data: bytes) -> list[Event]: ...

    def close(self) -> list[Event]: ...


class StreamEncoder(Protocol):
    """Canonical events to the exact bytes the protocol's SDK expects.

    `close()` ends the stream: it emits whatever the protocol needs at the end (`[DONE]`,
    `message_stop`), including a clean finish when no `Finish` event was seen.
    """

    def feed(self, event: Event) -> bytes: ...

    def close(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Codec:
    name: ProtocolName
    parse_request: Callable[..., ChatRequest]
    render_request: Callable[[ChatRequest], dict[str, Any]]
    parse_response: Callable[[dict[str, Any]], ChatResponse]
    response_usage: Callable[[dict[str, Any]], Usage]  # what parse_response reads of usage
    render_response: Callable[[ChatResponse], dict[str, Any]]
    decoder: Callable[[], StreamDecoder]
    encoder: Callable[..., StreamEncoder]
    render_error: Callable[[int, str], dict[str, Any]]


def error_message(body: Any) -> str | None:
    """The human message inside an error body of any of the three protocols (or None).

    OpenAI `{"error": {"message"}}`, Anthropic `{"type": "error", "error": {"message"}}`,
    Gemini `{"error": {"code", "message", "status"}}` (also as a one-element list).
    """
    if isinstance(body, list) and body:
        body = body[0]
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        message = err.get("message")
        return message if isinstance(message, str) else None
    if isinstance(err, str):
        return err
    message = body.get("message")
    return message if isinstance(message, str) else None


_CODECS: dict[str, Codec] = {}


def codec(name: str) -> Codec:
    """The codec of protocol `name` (`openai`, `anthropic`, `gemini`)."""
    if not _CODECS:
        _load()
    return _CODECS[name]


def _load() -> None:
    from protocol import anthropic, gemini, openai_chat, openai_responses

    for module in (openai_chat, anthropic, gemini, openai_responses):
        c = Codec(
            name=module.NAME,
            parse_request=module.parse_request,
            render_request=module.render_request,
            parse_response=module.parse_response,
            response_usage=module.response_usage,
            render_response=module.render_response,
            decoder=module.StreamDecoder,
            encoder=module.StreamEncoder,
            render_error=module.render_error,
        )
        _CODECS[c.name] = c
