"""Reasoning and temperature through the real proxy: the table, session overrides, clamping.

The strict test upstream rejects what the real APIs reject (an Anthropic budget under 1024 or
not below max_tokens, Anthropic temperature above 1 or with thinking not 1, Gemini levels on
2.5 models), so a converted request that reaches it and is answered is a valid one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.genai import types as gt

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, Upstream


@pytest.fixture(autouse=True)
def fresh(upstream: Upstream) -> Iterator[None]:
    upstream.reset()
    upstream.set_default(Reply(text="ok"))
    yield
    upstream.reset()


def body(upstream: Upstream, backend: str) -> dict[str, Any]:
    found = upstream.last(backend).body
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize(
    ("effort", "budget"), [("low", 2048), ("medium", 8192), ("high", 16384)]
)
def test_an_openai_effort_becomes_the_tables_anthropic_budget(
    effort: str, budget: int, proxy: ProxyProcess, upstream: Upstream
) -> None:
    clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model="anthropic:claude-sonnet-4-5",
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort=effort,  # type: ignore[arg-type]
        temperature=0.3,
    )
    sent = body(upstream, "anthropic")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert sent["max_tokens"] > budget
    assert sent.get("temperature", 1) == 1  # Anthropic: thinking needs temperature 1


def test_an_anthropic_budget_becomes_the_nearest_openai_effort(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    clients.anthropic_client(proxy.url, PROXY_KEY).messages.create(
        model="openai:o3",
        max_tokens=20000,
        thinking={"type": "enabled", "budget_tokens": 10000},
        messages=[{"role": "user", "content": "think"}],
    )
    assert body(upstream, "openai")["reasoning_effort"] == "medium"


def test_a_gemini_budget_reaches_openrouter_as_its_reasoning_object(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    gemini = clients.gemini_client(proxy.url, PROXY_KEY)
    gemini.models.generate_content(
        model="openrouter:anthropic/claude-3.5-sonnet",
        contents="think",
        config=gt.GenerateContentConfig(
            thinking_config=gt.ThinkingConfig(thinking_budget=3000, include_thoughts=True)
        ),
    )
    assert body(upstream, "openrouter")["reasoning"]["max_tokens"] == 3000


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("gemini:gemini-2.5-pro", "thinkingBudget", 24576),
        ("gemini:gemini-3-pro-preview", "thinkingLevel", "HIGH"),
    ],
)
def test_an_effort_reaches_gemini_as_a_budget_or_a_level(
    model: str, field: str, value: Any, proxy: ProxyProcess, upstream: Upstream
) -> None:
    clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "think"}], reasoning_effort="high"
    )
    config = body(upstream, "gemini")["generationConfig"]["thinkingConfig"]
    assert config[field] in (value, value.lower() if isinstance(value, str) else value)
    other = "thinkingLevel" if field == "thinkingBudget" else "thinkingBudget"
    assert other not in config


def test_a_small_budget_is_raised_to_anthropics_minimum(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    gemini = clients.gemini_client(proxy.url, PROXY_KEY)
    gemini.models.generate_content(
        model="anthropic:claude-sonnet-4-5",
        contents="think a little",
        config=gt.GenerateContentConfig(
            max_output_tokens=600, thinking_config=gt.ThinkingConfig(thinking_budget=300)
        ),
    )
    sent = body(upstream, "anthropic")
    assert sent["thinking"]["budget_tokens"] >= 1024
    assert sent["max_tokens"] > sent["thinking"]["budget_tokens"]


def test_temperature_is_clamped_to_the_targets_range(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model="anthropic:claude-sonnet-4-5",
        messages=[{"role": "user", "content": "be creative"}],
        temperature=1.7,
    )
    assert body(upstream, "anthropic")["temperature"] == 1.0


def _say(proxy: ProxyProcess, text: str, model: str, session: str) -> str:
    reply = clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-session-id": session},
    )
    return reply.choices[0].message.content or ""


def test_session_overrides_win_and_unset_restores_the_requests_own(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    session = "reasoning-session"
    _say(proxy, "!/set(reasoning-effort=high)", "anthropic:claude-sonnet-4-5", session)
    clients.anthropic_client(proxy.url, PROXY_KEY).messages.create(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=30000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "go"}],
        extra_headers={"x-session-id": session},
    )
    assert body(upstream, "anthropic")["thinking"]["budget_tokens"] == 16384  # the session's
    _say(proxy, "!/set(thinking-budget=5000)", "openai:gpt-4o", session)
    _say(proxy, "and now?", "openai:o3", session)
    assert body(upstream, "openai")["reasoning_effort"] == "medium"  # 5000 -> medium
    _say(proxy, "!/unset(reasoning-effort, thinking-budget)", "openai:gpt-4o", session)
    upstream.clear()
    clients.anthropic_client(proxy.url, PROXY_KEY).messages.create(
        model="anthropic:claude-sonnet-4-5",
        max_tokens=30000,
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "go"}],
        extra_headers={"x-session-id": session},
    )
    assert body(upstream, "anthropic")["thinking"]["budget_tokens"] == 2000  # the request's


def test_a_session_temperature_fills_in_only_when_the_request_has_none(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    session = "temperature-session"
    _say(proxy, "!/set(temperature=0.2)", "openai:gpt-4o", session)
    _say(proxy, "hi", "openai:gpt-4o", session)
    assert body(upstream, "openai")["temperature"] == 0.2
    clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model="openai:gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.9,
        extra_headers={"x-session-id": session},
    )
    assert body(upstream, "openai")["temperature"] == 0.9
