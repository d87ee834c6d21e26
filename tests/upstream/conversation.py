"""Reading a recorded request's conversation the same way in every wire format.

Tests (and `Upstream.when(match=...)` rules) ask what a request carried without caring which
API it spoke: the tools it declared, the tool results and the user texts in its conversation.
Understands OpenAI chat completions (OpenRouter alike), the OpenAI Responses API, Anthropic
Messages and Gemini `generateContent` bodies; anything else reads as empty.
"""

from __future__ import annotations

import json
from typing import Any

from tests.upstream.server import RecordedRequest


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text_of(content: Any) -> str:
    """A content value (a string, or a list of text-ish parts) as one string."""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for part in _dicts(content):
        text = part.get("text")
        if isinstance(text, str):
            pieces.append(text)
    return "".join(pieces)


def _body(record: RecordedRequest) -> dict[str, Any]:
    return record.body if isinstance(record.body, dict) else {}


def _is_responses(body: dict[str, Any]) -> bool:
    return "input" in body and "messages" not in body


def tool_names(record: RecordedRequest) -> list[str]:
    """The names of the function tools the request declares, in order."""
    body = _body(record)
    names: list[str] = []
    for tool in _dicts(body.get("tools")):
        declarations = tool.get("functionDeclarations", tool.get("function_declarations"))
        if isinstance(declarations, list):  # Gemini
            names.extend(str(d.get("name")) for d in _dicts(declarations))
        elif isinstance(tool.get("function"), dict):  # OpenAI chat
            names.append(str(tool["function"].get("name")))
        elif isinstance(tool.get("name"), str):  # Anthropic, OpenAI Responses
            names.append(tool["name"])
    return names


def tool_results(record: RecordedRequest) -> list[str]:
    """The content of every tool result in the conversation, oldest first, as text.

    Gemini's `functionResponse.response` objects come back as compact JSON.
    """
    body = _body(record)
    results: list[str] = []
    if "contents" in body:  # Gemini
        for content in _dicts(body.get("contents")):
            for part in _dicts(content.get("parts")):
                response = part.get("functionResponse", part.get("function_response"))
                if isinstance(response, dict):
                    results.append(json.dumps(response.get("response"), ensure_ascii=False))
    elif _is_responses(body):
        for item in _dicts(body.get("input")):
            if item.get("type") == "function_call_output":
                results.append(_text_of(item.get("output")))
    else:
        for message in _dicts(body.get("messages")):
            if message.get("role") == "tool":  # OpenAI chat
                results.append(_text_of(message.get("content")))
            for block in _dicts(message.get("content")):  # Anthropic
                if block.get("type") == "tool_result":
                    results.append(_text_of(block.get("content")))
    return results


def user_texts(record: RecordedRequest) -> list[str]:
    """The text of every user turn in the conversation (tool results excluded), oldest first."""
    body = _body(record)
    texts: list[str] = []
    if "contents" in body:  # Gemini
        for content in _dicts(body.get("contents")):
            if content.get("role", "user") == "user":
                text = _text_of(content.get("parts"))
                if text:
                    texts.append(text)
    elif _is_responses(body):
        given = body.get("input")
        if isinstance(given, str):
            texts.append(given)
        for item in _dicts(given):
            if item.get("role") == "user":
                texts.append(_text_of(item.get("content")))
    else:
        for message in _dicts(body.get("messages")):
            if message.get("role") == "user":
                text = _text_of(message.get("content"))
                if text:
                    texts.append(text)
    return texts
