"""History conversion across every front x backend pair, as each SDK really sends it.

One conversation, written in each client SDK's own terms: a system prompt, a user turn with text
and a base64 image, an assistant turn with text and two parallel tool calls, both tool results,
and a follow-up question; with temperature, top_p, max tokens and a stop sequence. The strict
upstream validates the converted body (a 400 would fail the call); the test then reads the
conversation back out of the backend-protocol body and checks nothing was lost or misplaced.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.genai import types as gt

from tests.e2e import clients
from tests.e2e.conftest import BACKENDS, MODELS, PROXY_KEY
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, Upstream

# a 1x1 transparent PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
PNG_B64 = base64.b64encode(PNG).decode()
SYSTEM = "You are a weather bot."
FIRST = "Compare Paris and Rome."
THEN = "Which is warmer?"
CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
RESULTS = ["21C sunny", "25C clear"]
TOOL = clients.TOOL


def send_openai(proxy: ProxyProcess, model: str) -> str:
    client = clients.openai_client(proxy.url, PROXY_KEY)
    r = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": FIRST},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": n, "arguments": json.dumps(a)},
                    }
                    for i, (n, a) in enumerate(CALLS)
                ],
            },
            *[
                {"role": "tool", "tool_call_id": f"call_{i}", "content": RESULTS[i]}
                for i in range(2)
            ],
            {"role": "user", "content": THEN},
        ],
        tools=[{"type": "function", "function": TOOL}],
        temperature=0.5,
        top_p=0.9,
        max_tokens=300,
        stop=["END"],
    )
    return r.choices[0].message.content or ""


def send_anthropic(proxy: ProxyProcess, model: str) -> str:
    client = clients.anthropic_client(proxy.url, PROXY_KEY)
    m = client.messages.create(
        model=model,
        system=SYSTEM,
        max_tokens=300,
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},
        tools=[{"name": TOOL["name"], "description": TOOL["description"],
                "input_schema": TOOL["parameters"]}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": FIRST},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": PNG_B64}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking both."},
                    *[
                        {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a}
                        for i, (n, a) in enumerate(CALLS)
                    ],
                ],
            },
            {
                "role": "user",
                "content": [
                    *[
                        {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": RESULTS[i]}
                        for i in range(2)
                    ],
                    {"type": "text", "text": THEN},
                ],
            },
        ],
    )
    return "".join(b.text for b in m.content if b.type == "text")


def send_gemini(proxy: ProxyProcess, model: str) -> str:
    client = clients.gemini_client(proxy.url, PROXY_KEY)
    contents = [
        gt.Content(
            role="user",
            parts=[gt.Part(text=FIRST), gt.Part.from_bytes(data=PNG, mime_type="image/png")],
        ),
        gt.Content(
            role="model",
            parts=[
                gt.Part(text="Checking both."),
                *[gt.Part(function_call=gt.FunctionCall(name=n, args=a)) for n, a in CALLS],
            ],
        ),
        gt.Content(
            role="user",
            parts=[
                *[
                    gt.Part.from_function_response(name=CALLS[i][0], response={"result": RESULTS[i]})
                    for i in range(2)
                ],
                gt.Part(text=THEN),
            ],
        ),
    ]
    config = gt.GenerateContentConfig(
        system_instruction=SYSTEM,
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=300,
        stop_sequences=["END"],
        tools=[gt.Tool(function_declarations=[gt.FunctionDeclaration(
            name=TOOL["name"], description=TOOL["description"],
            parameters_json_schema=TOOL["parameters"])])],
        automatic_function_calling=gt.AutomaticFunctionCallingConfig(disable=True),
    )
    r = client.models.generate_content(model=model, contents=contents, config=config)
    return r.text or ""


SEND = {"openai": send_openai, "anthropic": send_anthropic, "gemini": send_gemini}


def read_back(backend: str, body: dict[str, Any]) -> dict[str, Any]:
    """The conversation as the backend received it, in neutral terms."""
    out: dict[str, Any] = {"calls": [], "results": [], "images": 0, "texts": []}
    if backend in ("openai", "openrouter"):
        out["system"] = " ".join(
            m["content"] for m in body["messages"] if m["role"] in ("system", "developer")
        )
        for m in body["messages"]:
            content = m.get("content")
            parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
            for p in parts:
                if p.get("type") == "image_url":
                    out["images"] += 1
                elif p.get("type") == "text" and p.get("text") and m["role"] != "system":
                    if m["role"] == "tool":
                        out["results"].append((m["tool_call_id"], p["text"]))
                    else:
                        out["texts"].append((m["role"], p["text"]))
            for c in m.get("tool_calls") or []:
                out["calls"].append(
                    (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                )
        out["max_tokens"] = body.get("max_completion_tokens", body.get("max_tokens"))
        out["stop"] = body.get("stop")
        out["temperature"], out["top_p"] = body.get("temperature"), body.get("top_p")
    elif backend == "anthropic":
        system = body.get("system", "")
        out["system"] = system if isinstance(system, str) else "".join(b["text"] for b in system)
        for m in body["messages"]:
            content = m["content"]
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            for b in blocks:
                if b["type"] == "image":
                    out["images"] += 1
                elif b["type"] == "text":
                    out["texts"].append((m["role"], b["text"]))
                elif b["type"] == "tool_use":
                    out["calls"].append((b["id"], b["name"], b["input"]))
                elif b["type"] == "tool_result":
                    c = b["content"]
                    text = c if isinstance(c, str) else "".join(x.get("text", "") for x in c)
                    out["results"].append((b["tool_use_id"], text))
        out["max_tokens"] = body["max_tokens"]
        out["stop"] = body.get("stop_sequences")
        out["temperature"], out["top_p"] = body.get("temperature"), body.get("top_p")
    else:
        out["system"] = "".join(p["text"] for p in body["systemInstruction"]["parts"])
        for c in body["contents"]:
            role = {"model": "assistant"}.get(c.get("role", "user"), "user")
            for p in c["parts"]:
                if "inlineData" in p or "inline_data" in p:
                    out["images"] += 1
                elif "text" in p and not p.get("thought"):
                    out["texts"].append((role, p["text"]))
                elif "functionCall" in p:
                    fc = p["functionCall"]
                    out["calls"].append((fc.get("id") or fc["name"], fc["name"], fc["args"]))
                elif "functionResponse" in p:
                    fr = p["functionResponse"]
                    response = fr["response"]
                    text = response.get("result", response.get("output", json.dumps(response)))
                    out["results"].append((fr.get("id") or fr["name"], text))
        gen = body.get("generationConfig", {})
        out["max_tokens"] = gen.get("maxOutputTokens")
        out["stop"] = gen.get("stopSequences")
        out["temperature"], out["top_p"] = gen.get("temperature"), gen.get("topP")
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("front", ["openai", "anthropic", "gemini"])
def test_history_converts_completely(
    front: str, backend: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="Rome is warmer."))
    answer = SEND[front](proxy, f"{backend}:{MODELS[backend]}")
    assert answer == "Rome is warmer."

    (received,) = upstream.requests
    assert received.status == 200, received.error
    got = read_back(backend, received.body)
    assert got["system"] == SYSTEM
    assert got["images"] == 1
    assert [t for r, t in got["texts"] if r == "user"] == [FIRST, THEN]
    assert [t for r, t in got["texts"] if r == "assistant"] == ["Checking both."]
    assert [(n, a) for _, n, a in got["calls"]] == CALLS
    assert [t for _, t in got["results"]] == RESULTS
    # every result answers the call made in its place
    if backend != "gemini":  # Gemini pairs results with calls by name and order
        assert [i for i, _ in got["results"]] == [i for i, _, _ in got["calls"]]
        assert len({i for i, _, _ in got["calls"]}) == 2
    assert got["max_tokens"] == 300
    assert got["stop"] == ["END"]
    assert got["temperature"] == 0.5
    if backend != "anthropic" and front != "anthropic":
        assert got["top_p"] == 0.9
