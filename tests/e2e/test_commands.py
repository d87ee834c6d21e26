"""In-chat commands through the real proxy with the three SDKs.

Command-only messages are answered by the proxy in the client's protocol (plain and streamed)
and the upstream records no call; overrides reach the upstream on later turns; commands never
reach a backend, not even from the history.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import types as gt

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, Upstream


def ask(front: str, proxy: ProxyProcess, history: list[tuple[str, str]], *, stream: bool,
        session: str | None = None, model: str = "openai:gpt-4o") -> str:
    """Send a conversation (role, text) through `front`'s SDK; the assistant's text back."""
    headers = {"x-session-id": session} if session else {}
    if front == "openai":
        client = clients.openai_client(proxy.url, PROXY_KEY).with_options(default_headers=headers)
        messages: Any = [{"role": r, "content": t} for r, t in history]
        if not stream:
            r = client.chat.completions.create(model=model, messages=messages)
            return r.choices[0].message.content or ""
        return "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model=model, messages=messages, stream=True)
            if c.choices
        )
    if front == "anthropic":
        client_a = clients.anthropic_client(proxy.url, PROXY_KEY).with_options(
            default_headers=headers
        )
        messages = [{"role": r, "content": t} for r, t in history]
        if stream:
            with client_a.messages.stream(model=model, max_tokens=500, messages=messages) as s:
                m = s.get_final_message()
        else:
            m = client_a.messages.create(model=model, max_tokens=500, messages=messages)
        return "".join(b.text for b in m.content if b.type == "text")
    client_g = clients.gemini_client(proxy.url, PROXY_KEY)
    contents = [
        gt.Content(role="model" if r == "assistant" else "user", parts=[gt.Part(text=t)])
        for r, t in history
    ]
    config = gt.GenerateContentConfig(http_options=gt.HttpOptions(headers=headers))
    if stream:
        return "".join(
            r.text or ""
            for r in client_g.models.generate_content_stream(
                model=model, contents=contents, config=config
            )
        )
    return client_g.models.generate_content(model=model, contents=contents, config=config).text or ""


FRONTS = ("openai", "anthropic", "gemini")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("front", FRONTS)
def test_command_only_message_is_answered_by_the_proxy(
    front: str, stream: bool, proxy: ProxyProcess, upstream: Upstream
) -> None:
    reply = ask(front, proxy, [("user", "!/hello")], stream=stream, session=f"hello-{front}")
    assert "llm-interactive-proxy" in reply and f"hello-{front}" in reply
    assert upstream.requests == []


@pytest.mark.parametrize("front", FRONTS)
def test_set_model_reroutes_the_rest_of_the_chat(
    front: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    session = f"reroute-{front}"
    first = "!/set(model=anthropic:claude-x)"
    reply = ask(front, proxy, [("user", first)], stream=False, session=session)
    assert "anthropic:claude-x" in reply
    assert upstream.requests == []

    upstream.enqueue(Reply(text="from claude"))
    history = [("user", first), ("assistant", reply), ("user", "Hello there")]
    answer = ask(front, proxy, history, stream=True, session=session)
    assert answer == "from claude"
    (rec,) = upstream.requests
    assert rec.backend == "anthropic" and rec.body["model"] == "claude-x"
    assert "!/" not in repr(rec.body)  # the command never reaches a backend, not from history


def test_commands_with_other_text_apply_and_the_rest_goes_upstream(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="a joke"))
    answer = ask(
        "openai", proxy, [("user", "!/set(temperature=0.3) Tell me a joke")], stream=False,
        session="mixed", model="anthropic:claude-x",
    )
    assert answer == "a joke"  # the proxy's confirmation is not mixed into the answer
    body = upstream.requests[0].body
    assert body["temperature"] == 0.3
    assert body["messages"][-1]["content"] in ("Tell me a joke", [{"type": "text", "text": "Tell me a joke"}])


@pytest.mark.parametrize("front", FRONTS)
def test_bad_command_is_refused_and_nothing_is_applied(
    front: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    session = f"bad-{front}"
    reply = ask(front, proxy, [("user", "!/set(temperature=0.5) !/frobnicate")], stream=True,
                session=session)
    assert "Command error" in reply and "frobnicate" in reply
    upstream.enqueue(Reply(text="ok"))
    ask(front, proxy, [("user", "hi")], stream=False, session=session, model="openai:gpt-4o")
    assert "temperature" not in upstream.requests[0].body  # the valid set() was not applied


def test_bad_backend_names_the_closest_valid_ones(proxy: ProxyProcess, upstream: Upstream) -> None:
    reply = ask("openai", proxy, [("user", "!/set(model=antropic:claude-x)")],
                stream=False, session="typo")
    assert "Command error" in reply and "anthropic" in reply
    assert upstream.requests == []


def test_unlisted_model_is_accepted_with_the_closest_listed_names(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    """Model lists miss aliases (`claude-sonnet-4-5`), so a name not listed is not refused."""
    clients.openai_client(proxy.url, PROXY_KEY).models.list()  # the lists are cached
    reply = ask("openai", proxy, [("user", "!/set(model=anthropic:claude-sonet-4-5)")],
                stream=False, session="unlisted")
    assert "model set to anthropic:claude-sonet-4-5" in reply and "closest" in reply


def test_oneoff_applies_to_the_next_request_only(proxy: ProxyProcess, upstream: Upstream) -> None:
    ask("openai", proxy, [("user", "!/oneoff(gemini:gemini-2.5-flash)")], stream=False,
        session="oneoff")
    upstream.clear()
    upstream.enqueue(Reply(text="one"), Reply(text="two"))
    ask("openai", proxy, [("user", "first")], stream=False, session="oneoff")
    ask("openai", proxy, [("user", "second")], stream=False, session="oneoff")
    assert [r.backend for r in upstream.requests] == ["gemini", "openai"]


def test_sessions_without_a_header_follow_the_first_message(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    """Two chats of one user: a command in one does not reach the other."""
    chat_a = [("user", "Chat A begins. !/set(model=gemini:gemini-2.5-pro)")]
    reply = ask("anthropic", proxy, chat_a, stream=False)
    upstream.enqueue(Reply(text="a2"), Reply(text="b1"))
    ask("anthropic", proxy, [*chat_a, ("assistant", reply), ("user", "more")], stream=False)
    ask("anthropic", proxy, [("user", "Chat B begins.")], stream=False,
        model="anthropic:claude-sonnet-4-5")
    backends = [r.backend for r in upstream.requests if not r.path.endswith("/models")]
    assert backends[-2:] == ["gemini", "anthropic"]


def test_text_in_code_fences_and_tool_results_is_not_a_command(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="explained"))
    text = "What does this do?\n```\n!/set(model=openai:gpt-4o)\n```"
    ask("openai", proxy, [("user", text)], stream=False, session="fence",
        model="anthropic:claude-x")
    body = upstream.requests[-1].body
    assert body["model"] == "claude-x"
    assert "!/set(model=openai:gpt-4o)" in repr(body["messages"])


def test_a_system_entry_after_the_prompt_does_not_hide_its_commands(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    """Claude Code appends a `system` entry after the user's prompt (for non-Claude models):
    the prompt is still the newest user message, and its command runs."""
    upstream.reset()
    upstream.set_default(Reply(text="from gemini"))
    clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model="openai:gpt-4o",
        messages=[
            {"role": "user", "content": "!/set(model=gemini:gemini-2.5-pro) hi"},
            {"role": "system", "content": "Be brief."},
        ],
        extra_headers={"x-session-id": "trailing-system"},
    )
    last = upstream.last()
    assert last.backend == "gemini" and "gemini-2.5-pro" in last.path
    assert "!/set" not in last.raw.decode()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("front", "model"),
    [
        ("openai", "openai:gpt-4o"),  # same protocol, relayed as it came but for the name
        ("openai", "anthropic:claude-sonnet-4-5"),  # converted
        ("anthropic", "anthropic:claude-sonnet-4-5"),
        ("anthropic", "openai:gpt-4o"),
    ],
)
def test_answers_name_the_model_the_client_asked_for(
    front: str, model: str, stream: bool, proxy: ProxyProcess, upstream: Upstream
) -> None:
    """Agents compare the answer's model with the one they asked for (Claude Code drops the
    thinking of a turn whose model differs): answers carry the client's own name."""
    upstream.reset()
    upstream.set_default(Reply(text="named"))
    if front == "openai":
        client = clients.openai_client(proxy.url, PROXY_KEY)
        messages: Any = [{"role": "user", "content": "hi"}]
        if stream:
            names = {c.model for c in client.chat.completions.create(
                model=model, messages=messages, stream=True)}
        else:
            names = {client.chat.completions.create(model=model, messages=messages).model}
    else:
        claude = clients.anthropic_client(proxy.url, PROXY_KEY)
        if stream:
            with claude.messages.stream(
                model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            ) as s:
                names = {s.get_final_message().model}
        else:
            names = {claude.messages.create(
                model=model, max_tokens=50, messages=[{"role": "user", "content": "hi"}]).model}
    assert names == {model}
    assert upstream.last().model == model.split(":", 1)[1]  # the backend got its own name
