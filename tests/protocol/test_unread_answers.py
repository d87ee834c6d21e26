"""What the responses addon reads of a whole answer it relays unread (`addons.responses`):
each codec's `response_usage` is the usage `parse_response` finds, and `wire.string_chars` is
never less than the text (or the reasoning) `parse_response` reads out of the body, so a loop
check that needs more text than that can skip the answer. Over every codec's generated
answers (the property tests' strategies) and its golden bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.canonical import ChatResponse, TextPart, ThinkingPart
from protocol.codec import codec
from protocol.wire import string_chars
from tests.protocol import test_anthropic, test_gemini, test_openai_chat, test_openai_responses

STRATEGIES = {
    "openai": test_openai_chat.canonical_responses,
    "anthropic": test_anthropic.canonical_responses,
    "gemini": test_gemini.canonical_responses,
    "responses": test_openai_responses.canonical_responses,
}
GOLDEN = [
    *(("openai", body) for body in test_openai_chat.RESPONSES.values()),
    *(("responses", body) for body in test_openai_responses.RESPONSES.values()),
    ("anthropic", test_anthropic.FULL_RESPONSE),
]


def text_totals(answer: ChatResponse) -> tuple[int, int]:
    """(text, reasoning) characters a loop check reads."""
    text = sum(len(p.text) for p in answer.parts if isinstance(p, TextPart))
    thinking = sum(
        len(p.text) for p in answer.parts if isinstance(p, ThinkingPart) and not p.redacted
    )
    return text, thinking


def check_body(protocol: str, body: dict[str, Any]) -> None:
    c = codec(protocol)
    body = json.loads(json.dumps(body))  # as it comes off the wire
    answer = c.parse_response(body)
    assert c.response_usage(body) == answer.usage
    bound = string_chars(body, 10**9)
    assert bound >= max(text_totals(answer))
    # counting stops once past the limit, never below it
    assert string_chars(body, 5) == bound or string_chars(body, 5) > 5


@pytest.mark.parametrize(
    "protocol,body", GOLDEN, ids=[f"{p}-{i}" for i, (p, _) in enumerate(GOLDEN)]
)
def test_golden_answers(protocol: str, body: dict[str, Any]) -> None:
    check_body(protocol, body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
@pytest.mark.parametrize("protocol", list(STRATEGIES))
def test_generated_answers(protocol: str, data: st.DataObject) -> None:
    answer = data.draw(STRATEGIES[protocol]())
    check_body(protocol, codec(protocol).render_response(answer))


def test_string_chars_counts_every_string_in_the_value() -> None:
    body = {"a": "xyz", "b": [1, None, True, {"c": "hello"}], "d": 2.5}
    assert string_chars(body, 100) == (3 + 1) + (5 + 1)
    assert string_chars([], 100) == 0 and string_chars("", 100) == 1
