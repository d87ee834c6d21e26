"""OpenAI's usage object under its two sets of names (Chat Completions, Responses)."""

from __future__ import annotations

from protocol.canonical import Usage
from protocol.openai_usage import CHAT, RESPONSES, patched_usage, read_usage


def test_both_apis_read_into_the_same_usage() -> None:
    chat = {
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    responses = {
        "input_tokens": 10,
        "output_tokens": 4,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 2},
        "output_tokens_details": {"reasoning_tokens": 1},
    }
    want = Usage(
        input_tokens=10,
        output_tokens=4,
        cached_tokens=3,
        cache_creation_tokens=2,
        reasoning_tokens=1,
    )
    assert read_usage(chat, CHAT) == want
    assert read_usage(responses, RESPONSES) == want


def test_odd_values_are_left_out_and_deepseeks_cache_count_is_chat_only() -> None:
    raw = {"prompt_tokens": "10", "completion_tokens": True, "prompt_cache_hit_tokens": 7}
    assert read_usage(raw, CHAT) == Usage(cached_tokens=7)
    assert read_usage({"input_tokens": 5, "prompt_cache_hit_tokens": 7}, RESPONSES) == Usage(
        input_tokens=5
    )
    assert read_usage(None, CHAT) == Usage()


def test_a_patch_keeps_what_the_backend_sent_and_writes_only_changes() -> None:
    raw = {
        "input_tokens": 10,
        "output_tokens": 4,
        "total_tokens": 14,
        "output_tokens_details": {"reasoning_tokens": 1, "vendor_extra": "kept"},
        "service_tier_tokens": 9,
    }
    same = patched_usage(read_usage(raw, RESPONSES), raw, RESPONSES)
    assert same == raw and same is not raw
    counted = Usage(input_tokens=10, output_tokens=6, reasoning_tokens=2, cached_tokens=5)
    out = patched_usage(counted, raw, RESPONSES)
    assert out["output_tokens"] == 6 and out["total_tokens"] == 16
    assert out["output_tokens_details"] == {"reasoning_tokens": 2, "vendor_extra": "kept"}
    assert out["input_tokens_details"] == {"cached_tokens": 5}
    assert out["service_tier_tokens"] == 9
