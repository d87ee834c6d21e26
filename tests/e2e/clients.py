"""The three official SDKs as test clients, each reduced to the same four calls.

Every function returns a `Got`: what the client saw (text, tool calls with parsed arguments,
finish reason, usage), read through the SDK's own parsed objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
from google import genai
from google.genai import types as gtypes

SYSTEM = "You are a terse assistant."
PROMPT = "What is the weather in Paris?"
TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
}


@dataclass
class Got:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finish: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


# ---------------------------------------------------------------- OpenAI


def openai_client(base: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)


def openai_call(client: openai.OpenAI, model: str, *, stream: bool, tools: bool) -> Got:
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
    }
    if tools:
        kwargs["tools"] = [{"type": "function", "function": TOOL}]
    got = Got()
    if not stream:
        r = client.chat.completions.create(**kwargs)
        msg = r.choices[0].message
        got.text = msg.content or ""
        got.tool_calls = [
            (c.function.name, json.loads(c.function.arguments))
            for c in (msg.tool_calls or [])
            if c.type == "function"
        ]
        got.finish = r.choices[0].finish_reason
        if r.usage:
            got.input_tokens, got.output_tokens = r.usage.prompt_tokens, r.usage.completion_tokens
        return got
    calls: dict[int, list[str]] = {}
    for chunk in client.chat.completions.create(
        **kwargs, stream=True, stream_options={"include_usage": True}
    ):
        if chunk.usage:
            got.input_tokens = chunk.usage.prompt_tokens
            got.output_tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            got.text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, ["", ""])
                if tc.function and tc.function.name:
                    entry[0] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry[1] += tc.function.arguments
            if choice.finish_reason:
                got.finish = choice.finish_reason
    got.tool_calls = [(n, json.loads(a or "{}")) for _, (n, a) in sorted(calls.items())]
    return got


# ---------------------------------------------------------------- Anthropic


def anthropic_client(base: str, key: str, prefix: str = "/anthropic") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{base}{prefix}", api_key=key, max_retries=0, timeout=30)


def anthropic_call(client: anthropic.Anthropic, model: str, *, stream: bool, tools: bool) -> Got:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 1024,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if tools:
        kwargs["tools"] = [
            {"name": TOOL["name"], "description": TOOL["description"],
             "input_schema": TOOL["parameters"]}
        ]
    if stream:
        with client.messages.stream(**kwargs) as s:
            streamed = "".join(s.text_stream)
            message = s.get_final_message()
    else:
        message = client.messages.create(**kwargs)
        streamed = None
    got = Got(finish=message.stop_reason)
    for block in message.content:
        if block.type == "text":
            got.text += block.text
        elif block.type == "tool_use":
            got.tool_calls.append((block.name, dict(block.input)))  # type: ignore[call-overload]
    if streamed is not None:
        assert streamed == got.text
    got.input_tokens = message.usage.input_tokens
    got.output_tokens = message.usage.output_tokens
    return got


# ---------------------------------------------------------------- Gemini


def gemini_client(base: str, key: str) -> genai.Client:
    return genai.Client(
        api_key=key, http_options=gtypes.HttpOptions(base_url=base, timeout=30_000)
    )


def gemini_call(client: genai.Client, model: str, *, stream: bool, tools: bool) -> Got:
    config = gtypes.GenerateContentConfig(system_instruction=SYSTEM)
    if tools:
        config.tools = [
            gtypes.Tool(
                function_declarations=[
                    gtypes.FunctionDeclaration(
                        name=TOOL["name"],
                        description=TOOL["description"],
                        parameters_json_schema=TOOL["parameters"],
                    )
                ]
            )
        ]
        config.automatic_function_calling = gtypes.AutomaticFunctionCallingConfig(disable=True)
    got = Got()
    if stream:
        responses = list(
            client.models.generate_content_stream(model=model, contents=PROMPT, config=config)
        )
    else:
        responses = [client.models.generate_content(model=model, contents=PROMPT, config=config)]
    for r in responses:
        for cand in r.candidates or []:
            for part in (cand.content.parts if cand.content else None) or []:
                if part.text and not part.thought:
                    got.text += part.text
                if part.function_call:
                    got.tool_calls.append(
                        (part.function_call.name or "", dict(part.function_call.args or {}))
                    )
            if cand.finish_reason:
                got.finish = cand.finish_reason.value
        if r.usage_metadata:
            got.input_tokens = r.usage_metadata.prompt_token_count
            got.output_tokens = r.usage_metadata.candidates_token_count
    return got
