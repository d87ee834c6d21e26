"""The two guards through the real proxy: looping answers halted, secrets redacted.

Loops: a looping upstream stream is cut, every SDK's call returns normally with the note and a
normal finish, the upstream connection is closed at once, the usage row says `loop_halted`.
Tool calls repeated in a row are not forwarded. Redaction: a key in the prompt never reaches the
upstream; a configured key in the upstream's answer never reaches the client.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import clients
from tests.e2e.conftest import MODELS, PROXY_KEY, UPSTREAM_KEYS, call, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, ToolCall, Upstream

FRONTS = ("openai", "anthropic", "gemini")
LOOP_UNIT = "Let me check the configuration file once more to be sure. "
PREFACE = "I looked at the build output and the error points at the linker settings. "
NOTE = '[loop detected: "'


@pytest.fixture(scope="module")
def guarded(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with running_proxy(upstream, tmp_path_factory.mktemp("conf-guards")) as process:
        yield process


@pytest.fixture(autouse=True)
def fresh(upstream: Upstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def usage_row(proxy: ProxyProcess, model: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(proxy.usage_db) as con:
            con.row_factory = sqlite3.Row
            found = con.execute(
                "SELECT * FROM usage WHERE model_requested = ? ORDER BY id DESC", (model,)
            ).fetchone()
        if found is not None:
            return dict(found)
        if time.monotonic() > deadline:
            raise AssertionError(f"no usage row for {model}")
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("front", FRONTS)
def test_a_looping_stream_is_halted_and_ends_normally(
    front: str, backend: str, guarded: ProxyProcess, upstream: Upstream
) -> None:
    looping = PREFACE + LOOP_UNIT * 60
    upstream.set_default(Reply(text=looping, text_chunks=120, chunk_delay=0.02))
    model = f"{backend}:{MODELS[backend]}-loop-{front}"
    started = time.monotonic()
    got = call(front, guarded, model, stream=True)
    took = time.monotonic() - started
    assert got.text.startswith(PREFACE)
    assert NOTE in got.text and "response halted]" in got.text
    before_note = got.text.split("\n\n" + NOTE)[0]
    repeats = before_note.count(LOOP_UNIT.strip())
    assert 2 <= repeats <= 6  # halted within a couple of repetitions past the threshold
    assert got.finish in ("stop", "end_turn", "STOP", "FinishReason.STOP")
    assert took < 2.0  # the whole looping answer would take 2.4 s
    # the upstream connection was closed: the upstream's next write failed at once
    deadline = time.monotonic() + 1.0
    record = upstream.last(backend)
    while record.closed_by_client is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record.closed_by_client is not None
    row = usage_row(guarded, model)
    assert row["outcome"] == "loop_halted" and (row["output_tokens"] or 0) > 0


@pytest.mark.parametrize("front", FRONTS)
def test_a_looping_whole_answer_is_truncated(
    front: str, guarded: ProxyProcess, upstream: Upstream
) -> None:
    upstream.set_default(Reply(text=PREFACE + LOOP_UNIT * 30))
    got = call(front, guarded, f"anthropic:claude-sonnet-4-5-wholeloop-{front}", stream=False)
    assert got.text.startswith(PREFACE) and NOTE in got.text
    assert got.text.count(LOOP_UNIT.strip()) <= 6


@pytest.mark.parametrize("front", FRONTS)
def test_text_without_a_loop_is_untouched(
    front: str, guarded: ProxyProcess, upstream: Upstream
) -> None:
    table = "| id | name | status |\n|---|---|---|\n" + "".join(
        f"| {i} | worker-{i} | ok |\n" for i in range(40)
    )
    upstream.set_default(Reply(text=table, text_chunks=40))
    assert call(front, guarded, f"openai:gpt-4o-table-{front}", stream=True).text == table


def test_loop_detection_can_be_turned_off_for_a_session(
    guarded: ProxyProcess, upstream: Upstream
) -> None:
    client = clients.openai_client(guarded.url, PROXY_KEY)
    session = {"x-session-id": "no-loop-guard"}
    reply = client.chat.completions.create(
        model="openai:gpt-4o",
        messages=[{"role": "user", "content": "!/set(loop-detection=false)"}],
        extra_headers=session,
    )
    assert "loop" in (reply.choices[0].message.content or "")
    looping = PREFACE + LOOP_UNIT * 20
    upstream.set_default(Reply(text=looping, text_chunks=20))
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="openai:gpt-4o",
            messages=[{"role": "user", "content": "go on"}],
            stream=True,
            extra_headers=session,
        )
        if c.choices
    )
    assert text == looping


def _agent_turn(client: Any, history: list[dict[str, Any]], session: str) -> Any:
    return client.chat.completions.create(
        model="openai:gpt-4o",
        messages=history,
        tools=[{"type": "function", "function": clients.TOOL}],
        extra_headers={"x-session-id": session},
    )


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_tool_called_over_and_over_is_stopped(
    stream: bool, guarded: ProxyProcess, upstream: Upstream
) -> None:
    """The model calls the same tool with the same arguments after every result: the 4th
    identical call in a row is answered with an explanation instead of being forwarded."""
    client = clients.openai_client(guarded.url, PROXY_KEY)
    call_ = ToolCall("get_weather", {"city": "Paris", "unit": "c"})
    upstream.set_default(Reply(tool_calls=[call_]))
    history: list[dict[str, Any]] = [{"role": "user", "content": "weather in Paris?"}]
    session = f"tool-loop-{stream}"
    finishes = []
    for turn in range(4):
        if stream:
            calls: dict[int, list[str]] = {}
            text, finish = "", None
            for chunk in client.chat.completions.create(
                model="openai:gpt-4o",
                messages=history,
                tools=[{"type": "function", "function": clients.TOOL}],
                extra_headers={"x-session-id": session},
                stream=True,
            ):
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    for tc in choice.delta.tool_calls or []:
                        entry = calls.setdefault(tc.index, ["", "", ""])
                        entry[0] = tc.id or entry[0]
                        if tc.function and tc.function.name:
                            entry[1] = tc.function.name
                        entry[2] += (tc.function.arguments or "") if tc.function else ""
                    finish = choice.finish_reason or finish
            tool_calls = [(i, n, a) for i, n, a in calls.values()]
        else:
            r = _agent_turn(client, history, session)
            msg = r.choices[0].message
            text, finish = msg.content or "", r.choices[0].finish_reason
            tool_calls = [(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or []]
        finishes.append(finish)
        if turn < 3:
            assert tool_calls and tool_calls[0][1] == "get_weather", turn
            call_id, name, args = tool_calls[0]
            history.append({
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": call_id, "type": "function",
                                "function": {"name": name, "arguments": args}}],
            })
            history.append({"role": "tool", "tool_call_id": call_id, "content": "18 C, sunny"})
        else:
            assert not tool_calls
            assert "get_weather" in text and "4" in text and "not" in text.lower()
    assert finishes == ["tool_calls", "tool_calls", "tool_calls", "stop"]


SECRET_IN_PROMPT = "sk-proj-" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kM9nP2rS5uV8x"


@pytest.mark.parametrize("front", FRONTS)
def test_secrets_in_the_prompt_never_reach_the_upstream(
    front: str, guarded: ProxyProcess, upstream: Upstream
) -> None:
    configured = UPSTREAM_KEYS["gemini"]  # a key the proxy holds
    prompt = f"my keys are {SECRET_IN_PROMPT} and {configured}, why does auth fail?"
    if front == "openai":
        clients.openai_client(guarded.url, PROXY_KEY).chat.completions.create(
            model="anthropic:claude-sonnet-4-5",
            messages=[{"role": "system", "content": f"admin key {configured}"},
                      {"role": "user", "content": prompt}],
        )
    elif front == "anthropic":
        clients.anthropic_client(guarded.url, PROXY_KEY).messages.create(
            model="anthropic:claude-sonnet-4-5",
            max_tokens=100,
            system=f"admin key {configured}",
            messages=[{"role": "user", "content": prompt}],
        )
    else:
        gemini = clients.gemini_client(guarded.url, PROXY_KEY)
        gemini.models.generate_content(
            model="anthropic:claude-sonnet-4-5",
            contents=prompt,
            config={"system_instruction": f"admin key {configured}"},
        )
    sent = upstream.last("anthropic").raw.decode()
    assert SECRET_IN_PROMPT not in sent and configured not in sent
    assert sent.count("(API_KEY_HAS_BEEN_REDACTED)") == 3
    assert SECRET_IN_PROMPT not in guarded.log() and configured not in guarded.log()
    row = usage_row(guarded, "anthropic:claude-sonnet-4-5")
    assert row["redactions"] == 3


def test_a_key_in_a_tool_call_argument_is_redacted(guarded: ProxyProcess, upstream: Upstream) -> None:
    history = [
        {"role": "user", "content": "deploy"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather",
                         "arguments": json.dumps({"city": SECRET_IN_PROMPT})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"token {SECRET_IN_PROMPT} ok"},
    ]
    _agent_turn(clients.openai_client(guarded.url, PROXY_KEY), history, "redact-tools")
    sent = upstream.last("openai").raw.decode()
    assert SECRET_IN_PROMPT not in sent and sent.count("(API_KEY_HAS_BEEN_REDACTED)") == 2


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("front", FRONTS)
def test_a_configured_key_in_the_answer_never_reaches_the_client(
    front: str, stream: bool, guarded: ProxyProcess, upstream: Upstream
) -> None:
    leaked = UPSTREAM_KEYS["openai"]
    text = f"Sure, your key is {leaked} and it is valid."
    # split into many small deltas: the key is cut across several chunks
    upstream.set_default(Reply(text=text, text_chunks=len(text) // 3))
    got = call(front, guarded, f"openai:gpt-4o-echo-{front}-{int(stream)}", stream=stream)
    assert leaked not in got.text
    assert got.text == text.replace(leaked, "(API_KEY_HAS_BEEN_REDACTED)")
