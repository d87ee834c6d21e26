"""A readable text rendering of an exchange: the route, the conversation and the answer.

Used by the mitmweb/mitmproxy content view. Long texts are shortened in the middle; keys are
never shown (the route names them by their variable).
"""

from __future__ import annotations

import json
from typing import Any

from protocol.canonical import (
    ChatResponse,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)
from protocol.exchange import Exchange, answer_of

MAX_TEXT = 4000


MAX_CLIENT_BODY = 20_000


def _short(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters ...]\n{text[-half:]}"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) or prefix


def render_part(part: Part) -> str:
    if isinstance(part, TextPart):
        return _indent(_short(part.text))
    if isinstance(part, ThinkingPart):
        kind = "redacted thinking" if part.redacted else "thinking"
        return _indent(f"[{kind}]\n" + _short(part.text, 1500))
    if isinstance(part, ToolCallPart):
        return _indent(f"-> tool call {part.name} ({part.id}): {_short(part.arguments, 1500)}")
    if isinstance(part, ToolResultPart):
        body = "".join(p.text if isinstance(p, TextPart) else "[image]" for p in part.content)
        flag = " (error)" if part.is_error else ""
        return _indent(f"<- tool result for {part.call_id}{flag}: {_short(body, 1500)}")
    if isinstance(part, ImagePart):
        where = part.url or f"{part.media_type or 'image'}, {len(part.data or '')} base64 chars"
        return _indent(f"[image: {where}]")
    if isinstance(part, OpaquePart):
        return _indent(f"[{part.protocol} block: {json.dumps(part.data)[:200]}]")
    return _indent(repr(part)[:200])


def render_message(message: Message) -> str:
    parts = "\n".join(render_part(p) for p in message.content)
    return f"{message.role.upper()}:\n{parts}"


def render_route(ex: Exchange) -> str:
    lines = [
        f"front:    {ex.front.protocol} ({ex.front.arrival}), "
        f"{'stream' if ex.front.client_stream else 'whole answer'}",
        f"model:    {ex.requested_model}",
    ]
    for i, a in enumerate(ex.route.attempts, 1):
        failed = f"  failed: {a.failure}" if a.failure else ""
        lines.append(f"attempt {i}: {a.backend}:{a.model} key {a.key_id or '(client key)'}{failed}")
    if ex.front.session_id:
        lines.append(f"session:  {ex.front.session_id}")
    return "\n".join(lines)


def render_request(ex: Exchange) -> str:
    req = ex.request
    out = ["== route ==", render_route(ex), "", "== conversation =="]
    if req.system:
        out.append("SYSTEM:\n" + _indent(_short(req.system_text())))
    out += [render_message(m) for m in req.messages]
    if req.tools:
        out += ["", "== tools ==", ", ".join(t.name for t in req.tools)]
    settings = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_tokens": req.max_tokens,
        "stop": req.stop or None,
        "reasoning": req.reasoning.model_dump(exclude_none=True) if req.reasoning else None,
    }
    shown = {k: v for k, v in settings.items() if v is not None}
    if shown:
        out += ["", "== settings ==", json.dumps(shown)]
    out += ["", "== the client's request ==", *render_client_request(ex)]
    return "\n".join(out)


def render_client_request(ex: Exchange) -> list[str]:
    """The request as the client sent it (the flow itself shows it as sent upstream): its
    line and its JSON body, secrets redacted as in the prompt, long texts shortened."""
    body = json.dumps(ex.raw, indent=2, ensure_ascii=False)
    redactor = ex.redactor or ex.answer_scrubber
    if redactor is not None:  # before shortening: a key cut in two would not be found
        body = redactor.redact(body)[0]
    if len(body) > MAX_CLIENT_BODY:
        body = body[:MAX_CLIENT_BODY] + f"\n... ({len(body) - MAX_CLIENT_BODY} more characters)"
    return [ex.client_line or "(request line unknown)", body]


def render_answer(answer: ChatResponse | None) -> str:
    if answer is None:
        return "(no answer)"
    parts = "\n".join(render_part(p) for p in answer.parts) or "    (empty)"
    return f"ASSISTANT ({answer.model or 'model'}), stop: {answer.stop_reason}\n{parts}"


def render_response(ex: Exchange) -> str:
    out = ["== answer ==", render_answer(answer_of(ex)), "", "== outcome =="]
    out.append(f"{ex.outcome}, status {ex.status}" + (f": {ex.error}" if ex.error else ""))
    u = ex.usage
    out.append(
        f"tokens: in {u.input_tokens}, out {u.output_tokens}, reasoning {u.reasoning_tokens}, "
        f"cached {u.cached_tokens} ({ex.usage_source})"
    )
    if ex.finished is not None:
        timing = f"latency {(ex.finished - ex.started) * 1000:.0f} ms"
        if ex.first_byte is not None:
            timing += f", first byte {(ex.first_byte - ex.started) * 1000:.0f} ms"
        out.append(timing)
    return "\n".join(out)


def render_summary(summary: dict[str, Any]) -> str:
    """A saved flow keeps the exchange's plain summary: shown as it is."""
    return "== exchange (saved summary) ==\n" + json.dumps(summary, indent=2)
