"""Reasoning and temperature across protocols (`protocol.reasoning` and the codecs using it).

The pair table parses a request with the source protocol's codec and renders it with the
target's, as the proxy does, then checks the reasoning fields the backend receives (and that the
strict test upstream would accept the converted body).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from protocol import anthropic, gemini, openai_chat
from protocol.canonical import ChatRequest, Reasoning, ToolChoice
from protocol.reasoning import (
    DEFAULT_TABLE,
    Effort,
    ReasoningTable,
    anthropic_thinking,
    apply_session,
    current_table,
    effort_for_budget,
    fit_to_target,
    gemini_thinking_config,
    openai_effort,
    openrouter_reasoning,
    set_table,
)
from tests.upstream.validate import check_anthropic, check_gemini_generate, check_openai_chat

HI = [{"role": "user", "content": "Hi"}]
GEMINI_HI = [{"role": "user", "parts": [{"text": "Hi"}]}]


@pytest.fixture(autouse=True)
def default_table() -> Iterator[None]:
    set_table(None)
    yield
    set_table(None)


# ----------------------------------------------------------------------------------------------
# sources: a request as each client sends it, parsed by its own codec
# ----------------------------------------------------------------------------------------------


def _openai(**fields: Any) -> ChatRequest:
    return openai_chat.parse_request({"model": "gpt-5", "messages": HI, **fields})


def _anthropic(**fields: Any) -> ChatRequest:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 16000, "messages": HI, **fields}
    return anthropic.parse_request(body)


def _gemini(model: str, thinking: dict[str, Any]) -> ChatRequest:
    body = {"contents": GEMINI_HI, "generationConfig": {"thinkingConfig": thinking}}
    return gemini.parse_request(body, model=model)


SOURCES: dict[str, Callable[[], ChatRequest]] = {
    "openai effort": lambda: _openai(reasoning_effort="high"),
    "openrouter budget": lambda: _openai(reasoning={"max_tokens": 6000}),
    "openrouter effort": lambda: _openai(reasoning={"effort": "low", "exclude": True}),
    "anthropic budget": lambda: _anthropic(thinking={"type": "enabled", "budget_tokens": 6000}),
    "anthropic adaptive": lambda: _anthropic(thinking={"type": "adaptive"}),
    "anthropic effort": lambda: _anthropic(
        thinking={"type": "adaptive"}, output_config={"effort": "max"}
    ),
    "gemini 2.5 budget": lambda: _gemini(
        "gemini-2.5-flash", {"thinkingBudget": 6000, "includeThoughts": True}
    ),
    "gemini 3 level": lambda: _gemini("gemini-3-pro-preview", {"thinkingLevel": "LOW"}),
}


# ----------------------------------------------------------------------------------------------
# targets: render for the backend, return its reasoning fields
# ----------------------------------------------------------------------------------------------


def _pick(body: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: body[k] for k in keys if k in body}


def _to_openai(req: ChatRequest) -> dict[str, Any]:
    req.model = "gpt-5"
    body = openai_chat.render_request(req)
    if req.source != "openai":
        assert check_openai_chat(body) is None
    return _pick(body, "reasoning_effort", "reasoning")


def _to_openrouter(req: ChatRequest) -> dict[str, Any]:
    req.model = "anthropic/claude-sonnet-4.5"
    body = openai_chat.render_request(req, dialect="openrouter")
    if req.source != "openai":
        assert check_openai_chat(body, "openrouter") is None
    return _pick(body, "reasoning_effort", "reasoning")


def _to_anthropic(req: ChatRequest) -> dict[str, Any]:
    req.model = "claude-sonnet-4-5"
    body = anthropic.render_request(req)
    assert check_anthropic(body) is None
    return _pick(body, "thinking", "max_tokens", "output_config")


def _to_gemini(model: str) -> Callable[[ChatRequest], dict[str, Any]]:
    def render(req: ChatRequest) -> dict[str, Any]:
        req.model = model
        body = gemini.render_request(req)
        assert check_gemini_generate(body) is None
        return body.get("generationConfig", {}).get("thinkingConfig", {})

    return render


TARGETS: dict[str, Callable[[ChatRequest], dict[str, Any]]] = {
    "openai": _to_openai,
    "openrouter": _to_openrouter,
    "anthropic": _to_anthropic,
    "gemini 2.5": _to_gemini("gemini-2.5-flash"),
    "gemini 3": _to_gemini("gemini-3-pro-preview"),
}


def _thinking(budget: int, max_tokens: int) -> dict[str, Any]:
    return {"thinking": {"type": "enabled", "budget_tokens": budget}, "max_tokens": max_tokens}


def _budget(n: int, include: bool | None = True) -> dict[str, Any]:
    return {"thinkingBudget": n} | ({} if include is None else {"includeThoughts": include})


def _level(level: str, include: bool | None = True) -> dict[str, Any]:
    return {"thinkingLevel": level} | ({} if include is None else {"includeThoughts": include})


ADAPTIVE = {"thinking": {"type": "adaptive"}, "max_tokens": 16000}

# (source, target) -> the reasoning fields the backend gets. Same-protocol pairs keep the
# client's own fields; converted pairs go through the table (budget 6000 is `medium`,
# Gemini 3 Pro takes only LOW/HIGH, gemini-2.5-flash budgets stop at 24576, a converted
# Anthropic request without max_tokens gets 8192).
EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    ("openai effort", "openai"): {"reasoning_effort": "high"},
    ("openai effort", "openrouter"): {"reasoning_effort": "high"},
    ("openai effort", "anthropic"): _thinking(16384, 16384 + 1024),
    ("openai effort", "gemini 2.5"): _budget(24576),
    ("openai effort", "gemini 3"): _level("HIGH"),
    ("openrouter budget", "openai"): {"reasoning": {"max_tokens": 6000}},
    ("openrouter budget", "openrouter"): {"reasoning": {"max_tokens": 6000}},
    ("openrouter budget", "anthropic"): _thinking(6000, 8192),
    ("openrouter budget", "gemini 2.5"): _budget(6000),
    ("openrouter budget", "gemini 3"): _level("HIGH"),
    ("openrouter effort", "openai"): {"reasoning": {"effort": "low", "exclude": True}},
    ("openrouter effort", "openrouter"): {"reasoning": {"effort": "low", "exclude": True}},
    ("openrouter effort", "anthropic"): _thinking(2048, 8192),
    ("openrouter effort", "gemini 2.5"): _budget(1024, include=False),
    ("openrouter effort", "gemini 3"): _level("LOW", include=False),
    ("anthropic budget", "openai"): {"reasoning_effort": "medium"},
    ("anthropic budget", "openrouter"): {"reasoning": {"max_tokens": 6000}},
    ("anthropic budget", "anthropic"): _thinking(6000, 16000),
    ("anthropic budget", "gemini 2.5"): _budget(6000),
    ("anthropic budget", "gemini 3"): _level("HIGH"),
    ("anthropic adaptive", "openai"): {},
    ("anthropic adaptive", "openrouter"): {"reasoning": {"enabled": True}},
    ("anthropic adaptive", "anthropic"): ADAPTIVE,
    ("anthropic adaptive", "gemini 2.5"): _budget(-1),
    ("anthropic adaptive", "gemini 3"): {"includeThoughts": True},
    ("anthropic effort", "openai"): {"reasoning_effort": "xhigh"},
    ("anthropic effort", "openrouter"): {"reasoning": {"effort": "xhigh"}},
    ("anthropic effort", "anthropic"): ADAPTIVE | {"output_config": {"effort": "max"}},
    ("anthropic effort", "gemini 2.5"): _budget(24576),
    ("anthropic effort", "gemini 3"): _level("HIGH"),
    ("gemini 2.5 budget", "openai"): {"reasoning_effort": "medium"},
    ("gemini 2.5 budget", "openrouter"): {"reasoning": {"max_tokens": 6000}},
    ("gemini 2.5 budget", "anthropic"): _thinking(6000, 8192),
    ("gemini 2.5 budget", "gemini 2.5"): _budget(6000),
    ("gemini 2.5 budget", "gemini 3"): _budget(6000),
    ("gemini 3 level", "openai"): {"reasoning_effort": "low"},
    ("gemini 3 level", "openrouter"): {"reasoning": {"effort": "low"}},
    ("gemini 3 level", "anthropic"): _thinking(2048, 8192),
    ("gemini 3 level", "gemini 2.5"): _level("LOW", include=None),  # same protocol: as sent
    ("gemini 3 level", "gemini 3"): _level("LOW", include=None),
}


def test_every_pair_has_an_expectation() -> None:
    assert set(EXPECTED) == {(s, t) for s in SOURCES for t in TARGETS}


@pytest.mark.parametrize(("source", "target"), list(EXPECTED), ids=" -> ".join)
def test_reasoning_pair(source: str, target: str) -> None:
    req = SOURCES[source]()
    assert TARGETS[target](req) == EXPECTED[(source, target)]


# ----------------------------------------------------------------------------------------------
# budget <-> effort
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (0, "none"),
        (-1, None),
        (1, "low"),
        (1024, "low"),
        (4096, "low"),
        (4097, "medium"),
        (12288, "medium"),
        (12289, "high"),
        (100_000, "high"),
    ],
)
def test_effort_for_budget(budget: int, effort: str | None) -> None:
    assert effort_for_budget(budget) == effort


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_table_budgets_map_back_to_their_effort(effort: Effort) -> None:
    assert effort_for_budget(DEFAULT_TABLE.anthropic_budget[effort]) == effort
    assert effort_for_budget(DEFAULT_TABLE.gemini_budget[effort]) == effort


@pytest.mark.parametrize(
    ("reasoning", "effort"),
    [
        (Reasoning(effort="none", enabled=False), "none"),
        (Reasoning(enabled=False), None),
        (Reasoning(budget_tokens=0), None),
        (Reasoning(enabled=True), None),
        (Reasoning(effort="low", budget_tokens=50_000), "low"),  # OpenAI takes the effort
        (Reasoning(budget_tokens=50_000), "high"),
        (Reasoning(effort="xhigh"), "xhigh"),
        (Reasoning(effort="minimal"), "minimal"),
    ],
)
def test_openai_effort(reasoning: Reasoning, effort: str | None) -> None:
    assert openai_effort(reasoning) == effort


@pytest.mark.parametrize(
    ("reasoning", "obj"),
    [
        (Reasoning(enabled=False), {"effort": "none"}),
        (Reasoning(effort="medium", include_thoughts=False), {"effort": "medium", "exclude": True}),
        (Reasoning(budget_tokens=3000, enabled=True), {"max_tokens": 3000}),
        (Reasoning(enabled=True, include_thoughts=True), {"enabled": True}),
        (Reasoning(), None),
    ],
)
def test_openrouter_reasoning(reasoning: Reasoning, obj: dict[str, Any] | None) -> None:
    assert openrouter_reasoning(reasoning) == obj


# ----------------------------------------------------------------------------------------------
# Anthropic: budget >= 1024 and < max_tokens
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reasoning", "max_tokens", "budget", "max_after"),
    [
        (Reasoning(budget_tokens=100, enabled=True), 8192, 1024, 8192),
        (Reasoning(budget_tokens=5000), 5000, 5000, 6024),
        (Reasoning(budget_tokens=5000), 5001, 5000, 5001),
        (Reasoning(effort="high"), 1000, 16384, 17408),
        (Reasoning(effort="low", budget_tokens=-1), 8192, 2048, 8192),  # -1: dynamic
        (Reasoning(enabled=True), 4000, 8192, 9216),  # on with nothing: the medium budget
        (Reasoning(budget_tokens=40_000), 8192, 30_976, 32_000),  # raised up to the ceiling
        (Reasoning(budget_tokens=60_000), 50_000, 48_976, 50_000),  # the request's own is higher
        (Reasoning(budget_tokens=1024), 1, 1024, 2048),
    ],
)
def test_anthropic_budget_rules(
    reasoning: Reasoning, max_tokens: int, budget: int, max_after: int
) -> None:
    thinking, raised = anthropic_thinking(reasoning, max_tokens)
    assert thinking == {"type": "enabled", "budget_tokens": budget}
    assert raised == max_after
    assert 1024 <= budget < raised


@pytest.mark.parametrize(
    "reasoning",
    [
        None,
        Reasoning(),
        Reasoning(enabled=False, budget_tokens=5000),
        Reasoning(effort="none"),
        Reasoning(budget_tokens=0),
    ],
)
def test_anthropic_thinking_off(reasoning: Reasoning | None) -> None:
    assert anthropic_thinking(reasoning, 4000) == (None, 4000)


def test_converted_anthropic_body_with_a_big_budget_is_accepted() -> None:
    req = _gemini("gemini-2.5-pro", {"thinkingBudget": 32768})
    req.model = "claude-opus-4-1"
    body = anthropic.render_request(req)
    assert check_anthropic(body) is None
    assert body["thinking"]["budget_tokens"] < body["max_tokens"] <= 32000


# ----------------------------------------------------------------------------------------------
# Gemini: levels for 3, budgets in the 2.5 model's range
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reasoning", "model", "config"),
    [
        (Reasoning(effort="medium"), "gemini-3-flash-preview", {"thinkingLevel": "MEDIUM"}),
        (Reasoning(effort="medium"), "gemini-3-pro-preview", {"thinkingLevel": "HIGH"}),
        (Reasoning(effort="minimal"), "gemini-3-flash-preview", {"thinkingLevel": "MINIMAL"}),
        (Reasoning(effort="minimal"), "gemini-3-pro-preview", {"thinkingLevel": "LOW"}),
        (Reasoning(enabled=False), "gemini-3-pro-preview", {"thinkingLevel": "LOW"}),
        (Reasoning(budget_tokens=20_000), "models/gemini-3-flash", {"thinkingLevel": "HIGH"}),
        (Reasoning(enabled=False), "gemini-2.5-pro", {"thinkingBudget": 128}),
        (Reasoning(enabled=False), "gemini-2.5-flash-lite", {"thinkingBudget": 0}),
        (Reasoning(budget_tokens=100), "gemini-2.5-flash-lite", {"thinkingBudget": 512}),
        (Reasoning(budget_tokens=100), "gemini-2.5-pro", {"thinkingBudget": 128}),
        (Reasoning(effort="max"), "gemini-2.5-pro", {"thinkingBudget": 32768}),
        (Reasoning(effort="max"), "gemini-2.5-flash", {"thinkingBudget": 24576}),
        (Reasoning(effort="low", budget_tokens=3000), "gemini-2.5-flash", {"thinkingBudget": 3000}),
        (Reasoning(effort="low", budget_tokens=30_000), "gemini-3-pro", {"thinkingLevel": "LOW"}),
        (Reasoning(include_thoughts=False), "gemini-2.5-flash", {"includeThoughts": False}),
        (Reasoning(), "gemini-2.5-flash", None),
    ],
)
def test_gemini_thinking_config(
    reasoning: Reasoning, model: str, config: dict[str, Any] | None
) -> None:
    assert gemini_thinking_config(reasoning, model) == config


def test_gemini_include_thoughts_default_only_when_thinking() -> None:
    on = gemini_thinking_config(Reasoning(effort="low"), "gemini-2.5-flash", include_default=True)
    assert on == {"thinkingBudget": 1024, "includeThoughts": True}
    off = gemini_thinking_config(Reasoning(enabled=False), "gemini-2.5-flash", include_default=True)
    assert off == {"thinkingBudget": 0}


# ----------------------------------------------------------------------------------------------
# temperature
# ----------------------------------------------------------------------------------------------


def _plain(temperature: float | None = None, **fields: Any) -> ChatRequest:
    return ChatRequest(source="openai", model="m", temperature=temperature, **fields)


@pytest.mark.parametrize(
    ("target", "temperature", "fitted"),
    [
        ("anthropic", 1.5, 1.0),
        ("anthropic", 0.7, 0.7),
        ("anthropic", -0.5, 0.0),
        ("openai", 2.5, 2.0),
        ("openai", 1.5, 1.5),
        ("responses", 3.0, 2.0),
        ("gemini", 2.2, 2.0),
        ("gemini", 1.9, 1.9),
    ],
)
def test_temperature_is_clamped_to_the_target(
    target: str, temperature: float, fitted: float
) -> None:
    req = _plain(temperature)
    notes = fit_to_target(req, target, "m")
    assert req.temperature == fitted
    assert bool(notes) == (fitted != temperature)


def test_no_temperature_stays_none() -> None:
    req = _plain()
    assert fit_to_target(req, "anthropic", "m") == []
    assert req.temperature is None


def test_fit_to_an_unknown_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="carrier-pigeon"):
        fit_to_target(_plain(), "carrier-pigeon", "m")


def test_anthropic_thinking_forces_temperature_one_and_drops_top_k() -> None:
    req = _openai(reasoning_effort="high", temperature=0.3, top_p=0.5, top_k=5)
    assert fit_to_target(req, "anthropic", "claude-sonnet-4-5") == []  # the codec fits it
    req.model = "claude-sonnet-4-5"
    body = anthropic.render_request(req)
    assert check_anthropic(body) is None
    assert body["thinking"]["type"] == "enabled"
    assert body["temperature"] == 1 and "top_k" not in body and "top_p" not in body


def test_sampling_is_kept_when_an_open_tool_loop_leaves_thinking_off() -> None:
    """History from another provider: the assistant turn that called the tool has no thinking
    block, so Anthropic's thinking stays off for this request, and the client's sampling with
    it (it used to be forced to temperature 1 all the same)."""
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    req = openai_chat.parse_request(
        {
            "model": "gpt-5",
            "messages": messages,
            "reasoning_effort": "high",
            "temperature": 0.3,
            "top_k": 5,
        }
    )
    assert fit_to_target(req, "anthropic", "claude-sonnet-4-5") == []
    req.model = "claude-sonnet-4-5"
    body = anthropic.render_request(req)
    assert check_anthropic(body) is None
    assert "thinking" not in body
    assert body["temperature"] == 0.3 and body["top_k"] == 5


def test_anthropic_client_thinking_with_a_session_temperature() -> None:
    req = _anthropic(thinking={"type": "enabled", "budget_tokens": 2048})
    apply_session(req, temperature=0.4)
    fit_to_target(req, "anthropic", "claude-sonnet-4-5")
    assert req.temperature == 1.0
    assert check_anthropic(anthropic.render_request(req)) is None


def test_anthropic_high_top_p_is_kept_with_thinking() -> None:
    req = _openai(reasoning_effort="low", top_p=0.97)
    assert fit_to_target(req, "anthropic", "m") == []
    assert req.top_p == 0.97


@pytest.mark.parametrize(
    "req",
    [
        _anthropic(output_config={"effort": "low"}, temperature=0.5, top_k=3),  # effort alone
        _openai(temperature=0.5, top_k=3),  # no reasoning
        _openai(reasoning_effort="none", temperature=0.5, top_k=3),
    ],
    ids=["anthropic effort without thinking", "no reasoning", "effort none"],
)
def test_sampling_untouched_without_thinking(req: ChatRequest) -> None:
    assert fit_to_target(req, "anthropic", "m") == []
    assert (req.temperature, req.top_k) == (0.5, 3)


def test_forced_tool_use_leaves_thinking_off_and_sampling_alone() -> None:
    req = _openai(reasoning_effort="high", temperature=0.5)
    req.tool_choice = ToolChoice(mode="required")
    assert fit_to_target(req, "anthropic", "m") == []
    assert req.temperature == 0.5


def test_other_targets_keep_sampling_with_thinking() -> None:
    req = _anthropic(thinking={"type": "enabled", "budget_tokens": 2048}, temperature=0.3, top_k=4)
    assert fit_to_target(req, "gemini", "gemini-2.5-flash") == []
    assert (req.temperature, req.top_k) == (0.3, 4)


# ----------------------------------------------------------------------------------------------
# session overrides
# ----------------------------------------------------------------------------------------------


def test_session_effort_wins_over_the_request_budget() -> None:
    req = _anthropic(thinking={"type": "enabled", "budget_tokens": 6000})
    assert apply_session(req, effort="high")
    assert req.reasoning == Reasoning(effort="high", enabled=True)
    assert anthropic.render_request(req)["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert _to_openai(req) == {"reasoning_effort": "high"}


@pytest.mark.parametrize(("budget", "effort"), [(20_000, "high"), (2000, "low")])
def test_session_budget_wins_over_the_request_effort(budget: int, effort: str) -> None:
    req = _openai(reasoning_effort="medium")
    apply_session(req, budget=budget)
    assert req.reasoning == Reasoning(budget_tokens=budget, enabled=True)
    assert openai_chat.render_request(req)["reasoning_effort"] == effort
    assert _to_anthropic(req)["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_session_budget_replaces_an_openrouter_effort() -> None:
    req = _openai(reasoning={"effort": "low", "summary": "auto"})
    apply_session(req, budget=9000)
    body = openai_chat.render_request(req, dialect="openrouter")
    assert body["reasoning"] == {"summary": "auto", "max_tokens": 9000, "enabled": True}


def test_session_effort_replaces_an_openrouter_budget() -> None:
    req = _openai(reasoning={"max_tokens": 9000})
    apply_session(req, effort="low")
    body = openai_chat.render_request(req, dialect="openrouter")
    assert body["reasoning"] == {"effort": "low", "enabled": True}


def test_session_thinking_off() -> None:
    req = _anthropic(thinking={"type": "enabled", "budget_tokens": 6000})
    apply_session(req, budget=0)
    assert anthropic.render_request(req)["thinking"] == {"type": "disabled"}
    req = _anthropic(thinking={"type": "enabled", "budget_tokens": 6000})
    apply_session(req, effort="none")
    assert _to_openai(req) == {"reasoning_effort": "none"}


def test_session_budget_on_a_gemini_3_client_becomes_a_level() -> None:
    req = _gemini("gemini-3-pro-preview", {"thinkingLevel": "LOW", "includeThoughts": True})
    apply_session(req, budget=20_000)
    config = gemini.render_request(req)["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingLevel": "HIGH", "includeThoughts": True}


def test_session_both_effort_and_budget() -> None:
    req = _openai()
    apply_session(req, effort="low", budget=20_000)
    assert openai_chat.render_request(req)["reasoning_effort"] == "low"
    assert _to_anthropic(req)["thinking"]["budget_tokens"] == 20_000


def test_session_temperature_only_fills_a_missing_one() -> None:
    own = _openai(temperature=0.2)
    assert apply_session(own, temperature=1.5) == []
    assert own.temperature == 0.2
    bare = _openai()
    assert apply_session(bare, temperature=1.5)
    assert bare.temperature == 1.5


def test_session_without_overrides_changes_nothing() -> None:
    req = _anthropic(thinking={"type": "enabled", "budget_tokens": 6000})
    before = req.model_dump()
    assert apply_session(req) == []
    assert req.model_dump() == before
    assert anthropic.render_request(req)["thinking"] == {"type": "enabled", "budget_tokens": 6000}


def test_session_same_values_are_no_change() -> None:
    req = _openai(reasoning={"effort": "high", "enabled": True})
    assert apply_session(req, effort="high") == []


def test_unset_restores_the_request_value() -> None:
    """Overrides edit a copy: the next request (after `!/unset`) renders its own value again."""
    req = _openai(reasoning_effort="low")
    original = req.reasoning
    apply_session(req, effort="high")
    assert original == Reasoning(effort="low")
    again = _openai(reasoning_effort="low")
    assert apply_session(again) == []
    assert openai_chat.render_request(again)["reasoning_effort"] == "low"


def test_session_effort_is_checked() -> None:
    with pytest.raises(ValueError, match="turbo"):
        apply_session(_openai(), effort="turbo")


# ----------------------------------------------------------------------------------------------
# table override
# ----------------------------------------------------------------------------------------------


def test_partial_override_merges_over_the_defaults() -> None:
    table = ReasoningTable.from_config({"anthropic_budget": {"high": 20000}})
    assert table.anthropic_budget["high"] == 20000
    assert table.anthropic_budget["low"] == DEFAULT_TABLE.anthropic_budget["low"]
    assert table.gemini_budget == DEFAULT_TABLE.gemini_budget


def test_installed_table_is_used_by_the_codecs() -> None:
    set_table(
        ReasoningTable.from_config(
            {
                "anthropic_budget": {"high": 20000},
                "openai_effort": {"xhigh": "high"},
                "gemini_level": {"low": "minimal"},
                "gemini_budget": {"high": 9999},
                "openrouter": {"high": {"effort": "high", "summary": "detailed"}},
            }
        )
    )
    assert current_table().anthropic_budget["high"] == 20000
    assert _to_anthropic(_openai(reasoning_effort="high"))["thinking"]["budget_tokens"] == 20000
    assert _to_openai(_anthropic(output_config={"effort": "xhigh"})) == {"reasoning_effort": "high"}
    assert _to_gemini("gemini-3-flash")(_openai(reasoning_effort="low")) == _level("MINIMAL")
    assert _to_gemini("gemini-2.5-flash")(_openai(reasoning_effort="high")) == _budget(9999)
    assert _to_openrouter(_anthropic(output_config={"effort": "high"})) == {
        "reasoning": {"effort": "high", "summary": "detailed"}
    }
    set_table(None)
    assert current_table() is DEFAULT_TABLE


def test_override_of_the_budget_thresholds() -> None:
    table = ReasoningTable.from_config(
        {"effort_ceilings": {"minimal": 512, "low": 2048}, "effort_above": "medium"}
    )
    assert effort_for_budget(500, table) == "minimal"
    assert effort_for_budget(2000, table) == "low"
    assert effort_for_budget(50_000, table) == "medium"


def test_override_from_yaml_like_strings() -> None:
    table = ReasoningTable.from_config({"anthropic_budget": {"low": "3000"}})
    assert table.anthropic_budget["low"] == 3000


def test_no_override_is_the_default_table() -> None:
    assert ReasoningTable.from_config(None) is DEFAULT_TABLE
    assert ReasoningTable.from_config({}) == DEFAULT_TABLE


@pytest.mark.parametrize(
    ("mapping", "named"),
    [
        ({"anthropic_budgets": {}}, "'anthropic_budgets'"),
        ({"anthropic_budget": {"ultra": 5000}}, "anthropic_budget.ultra"),
        ({"anthropic_budget": {"high": 500}}, "anthropic_budget: high"),
        ({"anthropic_budget": {"none": 5000}}, "anthropic_budget"),
        ({"anthropic_budget": {"high": "lots"}}, "anthropic_budget.high"),
        ({"anthropic_budget": 5000}, "anthropic_budget"),
        ({"gemini_budget": {"low": -5}}, "gemini_budget: low"),
        ({"gemini_level": {"high": "extreme"}}, "gemini_level.high"),
        ({"gemini_pro_levels": []}, "gemini_pro_levels"),
        ({"openai_effort": {"low": "tiny"}}, "openai_effort.low"),
        ({"openrouter": {"low": {"effrot": "low"}}}, "'effrot'"),
        ({"effort_ceilings": {"low": 5000, "medium": 4000}}, "effort_ceilings: medium"),
        ({"effort_ceilings": {"none": 10}}, "effort_ceilings"),
        ({"effort_above": "low"}, "effort_above"),
        ({"enabled_effort": "lots"}, "enabled_effort"),
        ({"anthropic_max_tokens": 1500}, "anthropic_max_tokens"),
    ],
)
def test_bad_override_names_the_key(mapping: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match="reasoning table") as info:
        ReasoningTable.from_config(mapping)
    assert named in str(info.value)


def test_override_that_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        ReasoningTable.from_config(["high"])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# thinking and reasoning tokens come back in the client's place
# ----------------------------------------------------------------------------------------------

GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [{"text": "hmm", "thought": True}, {"text": "4"}],
            },
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 7},
}


def test_gemini_thoughts_reach_an_openai_client() -> None:
    body = openai_chat.render_response(gemini.parse_response(GEMINI_ANSWER))
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("hmm", "4")
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 7}
    assert body["usage"]["completion_tokens"] == 8


def test_gemini_thoughts_reach_an_anthropic_client() -> None:
    body = anthropic.render_response(gemini.parse_response(GEMINI_ANSWER))
    assert [b["type"] for b in body["content"]] == ["thinking", "text"]
    assert body["content"][0]["thinking"] == "hmm"
    assert body["usage"]["output_tokens"] == 8


def test_openai_reasoning_tokens_reach_a_gemini_client() -> None:
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "4", "reasoning_content": "hmm"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 8,
            "total_tokens": 13,
            "completion_tokens_details": {"reasoning_tokens": 7},
        },
    }
    body = gemini.render_response(openai_chat.parse_response(answer))
    parts = body["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "hmm", "thought": True} and parts[-1]["text"] == "4"
    assert body["usageMetadata"]["thoughtsTokenCount"] == 7
    assert body["usageMetadata"]["candidatesTokenCount"] == 1
