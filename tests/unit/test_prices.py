"""Prices: model ids find their price (or none), costs, and the user's price file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.canonical import Usage
from protocol.prices import DEFAULT_PRICES, Price, cost_usd, load_prices


@pytest.mark.parametrize(
    ("backend", "model", "known"),
    [
        ("openai", "gpt-4o", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # its own, older price
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "GPT-4.1-mini", "gpt-4.1-mini"),
        ("openai", "gpt-5-mini", "gpt-5-mini"),
        ("openai", "o3-pro", "o3-pro"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic", "claude-haiku-4-5@20251001", "claude-haiku-4-5"),
        ("gemini", "gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
        ("gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("gemini", "gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("openrouter", "anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4.5"),
        ("openrouter", "anthropic/claude-3.7-sonnet", "anthropic/claude-3.7-sonnet"),
        ("openrouter", "openai/gpt-4o-mini", "openai/gpt-4o-mini"),
        ("openrouter", "google/gemini-2.5-flash", "google/gemini-2.5-flash"),
    ],
)
def test_lookup_exact_then_longest_versioned_prefix(backend: str, model: str, known: str) -> None:
    price = DEFAULT_PRICES.lookup(backend, model)
    assert price is not None
    assert price == DEFAULT_PRICES.lookup(backend, known)


@pytest.mark.parametrize(
    ("backend", "model"),
    [
        ("openai", "gpt-4o-audio-preview"),  # another model, not a version
        ("openai", "gpt-4o-mini-tts"),
        ("openai", "gpt-6"),
        ("anthropic", "claude-sonnet-5"),
        ("gemini", "gemini-2.5-flash-image"),
        ("gemini", "gemini-2.5-pro-exp-03-25"),  # experimental (free) is not the paid model
        ("openrouter", "anthropic/claude-sonnet-4.5:free"),
        ("openrouter", "claude-sonnet-4-5"),  # OpenRouter names carry the vendor
        ("openrouter", "meta-llama/llama-3.3-70b-instruct"),
        ("anthropic", "gpt-4o"),  # prices are per backend
        ("mistral", "mistral-large"),
    ],
)
def test_unknown_models_cost_nothing_known(backend: str, model: str) -> None:
    assert DEFAULT_PRICES.lookup(backend, model) is None
    assert cost_usd(backend, model, Usage(input_tokens=1000, output_tokens=1000)) is None


def test_cost_of_plain_cached_and_written_tokens() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000)
    assert cost_usd("openai", "gpt-4o", usage) == pytest.approx(2.50 + 1.00)
    # cached tokens at the cached rate, the rest of the prompt at the input rate
    cached = Usage(input_tokens=1_000_000, cached_tokens=600_000, output_tokens=0)
    assert cost_usd("openai", "gpt-4o", cached) == pytest.approx(0.4 * 2.50 + 0.6 * 1.25)
    # Anthropic: cache writes at the write rate; reasoning is already inside output
    claude = Usage(
        input_tokens=10_000,
        cached_tokens=6_000,
        cache_creation_tokens=2_000,
        output_tokens=1_000,
        reasoning_tokens=400,
    )
    want = (2_000 * 3.00 + 6_000 * 0.30 + 2_000 * 3.75 + 1_000 * 15.00) / 1e6
    assert cost_usd("anthropic", "claude-sonnet-4-5-20250929", claude) == pytest.approx(want)
    # no cached rate known: cached tokens cost the input rate
    assert Price(1.0, 2.0).cost(cached) == pytest.approx(1.0)


def test_cost_needs_tokens_and_a_model() -> None:
    assert cost_usd("openai", "gpt-4o", Usage()) is None
    assert cost_usd("openai", None, Usage(input_tokens=5)) is None
    assert cost_usd(None, "gpt-4o", Usage(input_tokens=5)) is None
    only_out = cost_usd("openai", "gpt-4o", Usage(output_tokens=1_000_000))
    assert only_out == pytest.approx(10.0)


def test_load_prices_merges_json_and_yaml(tmp_path: Path) -> None:
    data = {
        "openai": {"gpt-4o": {"input": 1.0, "output": 4.0, "cached_input": 0.5}, "o1": None},
        "openrouter": {"meta-llama/llama-3.3-70b-instruct": {"input": 0.1, "output": 0.3}},
    }
    as_json = tmp_path / "prices.json"
    as_json.write_text(json.dumps(data))
    as_yaml = tmp_path / "prices.yaml"
    as_yaml.write_text(
        "openai:\n  gpt-4o: {input: 1.0, output: 4.0, cached_input: 0.5}\n  o1: null\n"
        "openrouter:\n  meta-llama/llama-3.3-70b-instruct: {input: 0.1, output: 0.3}\n"
    )
    for path in (as_json, as_yaml):
        table = load_prices(path)
        assert table.lookup("openai", "gpt-4o-2024-08-06") == Price(1.0, 4.0, 0.5)
        assert table.lookup("openai", "o1") is None  # removed
        assert table.lookup("openai", "gpt-4.1") == DEFAULT_PRICES.lookup("openai", "gpt-4.1")
        usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
        llama = table.cost_usd("openrouter", "meta-llama/llama-3.3-70b-instruct", usage)
        assert llama == pytest.approx(0.4)
    assert DEFAULT_PRICES.lookup("openai", "gpt-4o") == Price(2.50, 10.00, 1.25)  # untouched


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"openai": {"gpt-4o": {"input": 1}}}', "output is required"),
        ('{"openai": {"gpt-4o": {"input": -1, "output": 1}}}', "must be a number >= 0"),
        ('{"openai": {"gpt-4o": {"input": "1", "output": 1}}}', "must be a number >= 0"),
        ('{"openai": {"gpt-4o": {"input": 1, "output": 1, "per_image": 2}}}', "unknown field"),
        ('{"openai": ["gpt-4o"]}', "expected a mapping of model"),
        ("[1, 2]", "expected a mapping of backend"),
    ],
)
def test_bad_price_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_prices(path)
