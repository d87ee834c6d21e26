"""Per-backend timeout settings."""

from __future__ import annotations

import pytest

from protocol.timeouts import PerBackend


def test_one_number_for_every_backend() -> None:
    t = PerBackend.parse("120", option="x")
    assert t.get("openai") == 120 and t.get(None) == 120


def test_overrides_per_backend() -> None:
    t = PerBackend.parse(" 10 , gemini=30, openai = 2.5 ")
    assert (t.get("gemini"), t.get("openai"), t.get("anthropic")) == (30, 2.5, 10)


def test_zero_turns_a_timeout_off() -> None:
    t = PerBackend.parse("0,gemini=5")
    assert t.get("openai") is None and t.get("gemini") == 5
    assert PerBackend.parse(0).get("x") is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no default"),
        ("gemini=3", "no default"),
        ("ten", "not a number"),
        ("-1", "positive"),
        ("10,20", "more than one default"),
        ("10,=5", "names no backend"),
        ("inf", "positive"),
    ],
)
def test_bad_settings_name_the_option(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        PerBackend.parse(text, option="llm_idle_timeout")
    assert "llm_idle_timeout" in str(caught.value)
