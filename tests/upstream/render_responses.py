"""The OpenAI Responses API's rendering of a `Reply`: the `response` object and its SSE events.

Written from the API reference and the installed openai SDK's response types
(`openai.types.responses.Response`, `ResponseStreamEvent`, the stream helper's checks); it never
uses the project's `protocol/`. One `ResponsesRender` per answer fixes the ids, so the object,
every event and the error events agree on them (the SDK's stream helper checks that).

Output items, in order: a reasoning item when the reply has thinking (its summary only when the
request asked for one with `reasoning.summary`, one summary part per blank-line separated
paragraph; `encrypted_content` only when `include` lists `reasoning.encrypted_content`), a
message with one `output_text` part, one `function_call` item per tool call. Finish `length`
(and `content_filter`) make the response `incomplete` with its `incomplete_details`, and end a
stream with `response.incomplete`. Request parameters are echoed in the object as the API
does. A stream is `response.created`, `response.in_progress`, then per item
`output_item.added`, its part / delta / done events, `output_item.done`, then the final
lifecycle event; `sequence_number` counts from 0 and every delta carries an `obfuscation`
pad unless `stream_options.include_obfuscation` is false. `interleave_tool_args` and
`args_at_end` shape chat completions only (a Responses stream is item by item).
"""

from __future__ import annotations

import time
from typing import Any

from tests.upstream.render import _args_json, _has_thinking, _random, _signature, dumps, random_id
from tests.upstream.reply import (
    FINISH_CONTENT_FILTER,
    FINISH_LENGTH,
    Reply,
    Usage,
    split_text,
)

JSON = dict[str, Any]

ENCRYPTED_INCLUDE = "reasoning.encrypted_content"
_INCOMPLETE_REASONS = {FINISH_LENGTH: "max_output_tokens", FINISH_CONTENT_FILTER: "content_filter"}


def responses_usage(usage: Usage) -> JSON:
    return {
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": 0},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.input + usage.output,
    }


def _echo_tool(tool: Any) -> Any:
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "parameters": None, "strict": True, **tool}
    return tool


def _sse(event: JSON) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + dumps(event) + b"\n\n"


class ResponsesRender:
    """One answer to one request, rendered whole (`response`) or as events (`events`)."""

    def __init__(self, reply: Reply, model: str, request: JSON) -> None:
        self.reply = reply
        self.model = model
        self.request = request
        self.id = f"resp_{random_id(48)}"
        self.created_at = int(time.time())
        include = request.get("include") or []
        reasoning = request.get("reasoning") or {}
        self.summary = reasoning.get("summary") or reasoning.get("generate_summary")
        self.encrypted = ENCRYPTED_INCLUDE in include
        options = request.get("stream_options") or {}
        self.obfuscate = options.get("include_obfuscation") is not False
        self.reasoning_id = f"rs_{random_id(48)}"
        self.message_id = f"msg_{random_id(48)}"
        self.call_item_ids = [f"fc_{random_id(48)}" for _ in reply.tool_calls]
        self.call_ids = [call.id or f"call_{random_id()}" for call in reply.tool_calls]
        self.kept_events = 0  # set by the server when it cuts a stream short

    # ---------------------------------------------------------------- the whole answer

    @property
    def incomplete_reason(self) -> str | None:
        return _INCOMPLETE_REASONS.get(self.reply.neutral_finish)

    @property
    def summary_texts(self) -> list[str]:
        if not self.summary or not self.reply.thinking:
            return []
        return [text for text in self.reply.thinking.split("\n\n") if text]

    def reasoning_item(self) -> JSON | None:
        if not _has_thinking(self.reply):
            return None
        item: JSON = {
            "id": self.reasoning_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text} for text in self.summary_texts],
        }
        if self.encrypted:
            item["encrypted_content"] = _signature(self.reply)
        return item

    def _text_part(self, text: str) -> JSON:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}

    def message_item(self, status: str | None = None) -> JSON | None:
        text = self.reply.answer_text
        if not text:
            return None
        final = "incomplete" if self.incomplete_reason else "completed"
        return {
            "id": self.message_id,
            "type": "message",
            "status": status or final,
            "content": [self._text_part(text)] if status is None else [],
            "role": "assistant",
        }

    def call_item(self, index: int, done: bool = True) -> JSON:
        call = self.reply.tool_calls[index]
        return {
            "id": self.call_item_ids[index],
            "type": "function_call",
            "status": "completed" if done else "in_progress",
            "arguments": _args_json(call.args) if done else "",
            "call_id": self.call_ids[index],
            "name": call.name,
        }

    def output(self) -> list[JSON]:
        items = [self.reasoning_item(), self.message_item()]
        items += [self.call_item(index) for index in range(len(self.reply.tool_calls))]
        return [item for item in items if item is not None]

    def response(
        self,
        status: str | None = None,
        output: list[JSON] | None = None,
        error: JSON | None = None,
    ) -> JSON:
        """The `response` object; `status` None is the final one (completed / incomplete)."""
        request = self.request
        reason = self.incomplete_reason
        final = status is None
        if final:
            status = "incomplete" if reason else "completed"
        reasoning = request.get("reasoning") or {}
        body: JSON = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": bool(request.get("background") or False),
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": error,
            "incomplete_details": {"reason": reason} if final and reason else None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "max_tool_calls": request.get("max_tool_calls"),
            "model": self.model,
            "output": self.output() if output is None else output,
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": request.get("previous_response_id"),
            "prompt_cache_key": request.get("prompt_cache_key"),
            "prompt_cache_retention": request.get("prompt_cache_retention"),
            "reasoning": {
                "effort": reasoning.get("effort"),
                "summary": reasoning.get("summary", reasoning.get("generate_summary")),
            },
            "safety_identifier": request.get("safety_identifier"),
            "service_tier": request.get("service_tier") or "default",
            "store": request.get("store", True) is not False,
            "temperature": request.get("temperature", 1.0),
            "text": request.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": [_echo_tool(tool) for tool in request.get("tools") or []],
            "top_logprobs": request.get("top_logprobs", 0),
            "top_p": request.get("top_p", 1.0),
            "truncation": request.get("truncation") or "disabled",
            "usage": None,
            "user": request.get("user"),
            "metadata": request.get("metadata") or {},
        }
        if final and not self.reply.omit_usage:
            body["usage"] = responses_usage(self.reply.usage_numbers)
        return body

    # ---------------------------------------------------------------- the stream

    def events(self) -> list[bytes]:
        """Every SSE event of the streamed answer, `sequence_number` in order."""
        out: list[JSON] = []
        opening = self.response(status="in_progress", output=[])
        out.append({"type": "response.created", "response": opening})
        out.append({"type": "response.in_progress", "response": opening})
        position = 0
        reasoning = self.reasoning_item()
        if reasoning is not None:
            out.extend(self._reasoning_events(position, reasoning))
            position += 1
        message = self.message_item()
        if message is not None:
            out.extend(self._message_events(position, message))
            position += 1
        for index in range(len(self.reply.tool_calls)):
            out.extend(self._call_events(position, index))
            position += 1
        kind = "response.incomplete" if self.incomplete_reason else "response.completed"
        out.append({"type": kind, "response": self.response()})
        return [_sse({"type": e.pop("type"), "sequence_number": n, **e}) for n, e in enumerate(out)]

    def _delta(self, event: JSON) -> JSON:
        if self.obfuscate:
            event["obfuscation"] = random_id(_random.randint(1, 16))
        return event

    def _reasoning_events(self, position: int, item: JSON) -> list[JSON]:
        head = {"item_id": item["id"], "output_index": position}
        added = {"id": item["id"], "type": "reasoning", "summary": []}
        events: list[JSON] = [
            {"type": "response.output_item.added", "output_index": position, "item": added}
        ]
        for index, text in enumerate(self.summary_texts):
            part = {"type": "summary_text", "text": text}
            where = {**head, "summary_index": index}
            events.append(
                {
                    "type": "response.reasoning_summary_part.added",
                    **where,
                    "part": {"type": "summary_text", "text": ""},
                }
            )
            events.extend(
                self._delta(
                    {"type": "response.reasoning_summary_text.delta", **where, "delta": piece}
                )
                for piece in split_text(text, self.reply.text_chunks)
            )
            events.append({"type": "response.reasoning_summary_text.done", **where, "text": text})
            events.append({"type": "response.reasoning_summary_part.done", **where, "part": part})
        events.append({"type": "response.output_item.done", "output_index": position, "item": item})
        return events

    def _message_events(self, position: int, item: JSON) -> list[JSON]:
        text = self.reply.answer_text
        where = {"item_id": item["id"], "output_index": position, "content_index": 0}
        opened = self.message_item(status="in_progress")
        events: list[JSON] = [
            {"type": "response.output_item.added", "output_index": position, "item": opened},
            {"type": "response.content_part.added", **where, "part": self._text_part("")},
        ]
        events.extend(
            self._delta(
                {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            )
            for piece in split_text(text, self.reply.text_chunks)
        )
        events.append({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        events.append(
            {"type": "response.content_part.done", **where, "part": self._text_part(text)}
        )
        events.append({"type": "response.output_item.done", "output_index": position, "item": item})
        return events

    def _call_events(self, position: int, index: int) -> list[JSON]:
        item = self.call_item(index)
        where = {"item_id": item["id"], "output_index": position}
        events: list[JSON] = [
            {
                "type": "response.output_item.added",
                "output_index": position,
                "item": self.call_item(index, done=False),
            }
        ]
        events.extend(
            self._delta({"type": "response.function_call_arguments.delta", **where, "delta": piece})
            for piece in split_text(item["arguments"], self.reply.args_chunks)
        )
        events.append(
            {
                "type": "response.function_call_arguments.done",
                **where,
                "arguments": item["arguments"],
            }
        )
        events.append({"type": "response.output_item.done", "output_index": position, "item": item})
        return events

    # ---------------------------------------------------------------- errors mid-stream

    def error_event(self, message: str, bare: bool) -> bytes:
        """What ends a broken stream: `response.failed` (or, `bare`, an `error` event).

        Its `sequence_number` follows the `kept_events` the server sent before it.
        """
        sequence = self.kept_events
        code = self.reply.error_type or "server_error"
        if bare:
            return _sse(
                {
                    "type": "error",
                    "sequence_number": sequence,
                    "code": code,
                    "message": message,
                    "param": None,
                }
            )
        failed = self.response(status="failed", output=[], error={"code": code, "message": message})
        return _sse({"type": "response.failed", "sequence_number": sequence, "response": failed})
