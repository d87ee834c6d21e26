"""Model prices and the cost of one exchange in USD.

What this module owns: the built-in price table, the way a model id finds its price, the user's
price file merged over the table, and `cost_usd`.

The table: list prices in USD per 1,000,000 tokens, standard (not batch) tier, the short-context
rate where a vendor charges more for long prompts (Anthropic and Gemini above 200k tokens; those
surcharges are not modelled). Compiled 2025-11 from the vendors' pricing pages (OpenAI,
Anthropic, Google AI for developers), with Anthropic's 4.6 models added from its page in 2026.
PRICES CHANGE: check the vendors' pages, and put what differs in a price file (`load_prices`).

Columns: `input` (uncached prompt tokens), `output` (generated tokens, reasoning included),
`cached_input` (prompt tokens read from a cache; same as `input` when absent) and `cache_write`
(prompt tokens written to a cache, Anthropic's 5-minute rate; same as `input` when absent).

Matching a model id, per backend (`openai`, `anthropic`, `gemini`, `openrouter`; case and a
leading `models/` are ignored): the exact id first, then the longest known id that the model id
extends by a version or date suffix only (`claude-sonnet-4-5-20250929` -> `claude-sonnet-4-5`,
`gpt-4o-2024-08-06` -> `gpt-4o`, `gemini-2.5-pro-preview-06-05` -> `gemini-2.5-pro`,
`claude-3-5-sonnet-latest` -> `claude-3-5-sonnet`). A suffix that names another model
(`-pro`, `-mini`, `-lite`, `-audio`, `:free`) does not match: a model the table does not know
costs null, never a guess. OpenRouter ids are the vendor's ids under the vendor's prefix
(`anthropic/claude-sonnet-4.5`, `openai/gpt-4o`, `google/gemini-2.5-flash`).

A price file (JSON, or YAML by its `.yaml`/`.yml` suffix) maps backend -> model -> prices; each
entry replaces the built-in one of the same id, and `null` removes one::

    openrouter:
      meta-llama/llama-3.3-70b-instruct: {input: 0.10, output: 0.30}
    openai:
      gpt-4o: {input: 2.50, output: 10.00, cached_input: 1.25}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from protocol.canonical import Usage

PRICES_DATE = "2025-11"
PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float | None:
        """USD for `usage` (input includes cached and cache writes; output includes reasoning)."""
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        prompt = usage.input_tokens or 0
        cached = min(usage.cached_tokens or 0, prompt)
        written = min(usage.cache_creation_tokens or 0, prompt - cached)
        plain = prompt - cached - written
        dollars = (
            plain * self.input
            + cached * (self.cached_input if self.cached_input is not None else self.input)
            + written * (self.cache_write if self.cache_write is not None else self.input)
            + (usage.output_tokens or 0) * self.output
        )
        return dollars / PER_TOKENS


def _p(i: float, o: float, cached: float | None = None, write: float | None = None) -> Price:
    return Price(i, o, cached, write)


OPENAI: dict[str, Price] = {
    "gpt-4o": _p(2.50, 10.00, 1.25),
    "gpt-4o-2024-05-13": _p(5.00, 15.00),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "gpt-4.1": _p(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "o1": _p(15.00, 60.00, 7.50),
    "o3": _p(2.00, 8.00, 0.50),
    "o3-mini": _p(1.10, 4.40, 0.55),
    "o3-pro": _p(20.00, 80.00),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "gpt-5": _p(1.25, 10.00, 0.125),
    "gpt-5-mini": _p(0.25, 2.00, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-5-pro": _p(15.00, 120.00),
    "gpt-5-codex": _p(1.25, 10.00, 0.125),
    "gpt-5-chat-latest": _p(1.25, 10.00, 0.125),
    "gpt-5.1": _p(1.25, 10.00, 0.125),
    "gpt-5.1-codex": _p(1.25, 10.00, 0.125),
    "gpt-5.1-codex-mini": _p(0.25, 2.00, 0.025),
    "gpt-5.1-chat-latest": _p(1.25, 10.00, 0.125),
}

ANTHROPIC: dict[str, Price] = {
    "claude-opus-4-6": _p(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-5": _p(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-1": _p(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4-0": _p(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4": _p(15.00, 75.00, 1.50, 18.75),
    "claude-sonnet-4-6": _p(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4-5": _p(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4-0": _p(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4": _p(3.00, 15.00, 0.30, 3.75),
    "claude-haiku-4-5": _p(1.00, 5.00, 0.10, 1.25),
    "claude-3-7-sonnet": _p(3.00, 15.00, 0.30, 3.75),
    "claude-3-5-sonnet": _p(3.00, 15.00, 0.30, 3.75),
    "claude-3-5-haiku": _p(0.80, 4.00, 0.08, 1.00),
    "claude-3-opus": _p(15.00, 75.00, 1.50, 18.75),
    "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
}

GEMINI: dict[str, Price] = {
    "gemini-3-pro-preview": _p(2.00, 12.00, 0.20),
    "gemini-2.5-pro": _p(1.25, 10.00, 0.125),
    "gemini-2.5-flash": _p(0.30, 2.50, 0.03),
    "gemini-2.5-flash-lite": _p(0.10, 0.40, 0.01),
    "gemini-2.0-flash": _p(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": _p(0.075, 0.30),
}


def _openrouter(vendor: str, table: Mapping[str, Price], dots: bool) -> dict[str, Price]:
    """The vendor's ids as OpenRouter names them (`anthropic/claude-sonnet-4.5`)."""
    out: dict[str, Price] = {}
    for model, price in table.items():
        name = re.sub(r"(?<=-\d)-(?=\d(?:-|$))", ".", model) if dots else model
        out[f"{vendor}/{name}"] = price
    return out


DEFAULT_TABLE: dict[str, dict[str, Price]] = {
    "openai": OPENAI,
    "anthropic": ANTHROPIC,
    "gemini": GEMINI,
    "openrouter": {
        **_openrouter("openai", OPENAI, dots=False),
        **_openrouter("anthropic", ANTHROPIC, dots=True),
        **_openrouter("google", GEMINI, dots=False),
    },
}

# What may follow a known id in a model id that still names the same model: dates and versions
# (`-20250929`, `-2024-08-06`, `@20250929`, `-001`, `-preview-06-05`, `-latest`).
_VERSION_SUFFIX = re.compile(r"^(?:[-@](?:\d+|latest|preview))+$")


def _normal(model: str) -> str:
    name = model.strip().lower()
    return name.removeprefix("models/")


class PriceTable:
    """Prices per backend and model id, with the matching rules of this module."""

    def __init__(self, table: Mapping[str, Mapping[str, Price]]) -> None:
        self._table = {b.lower(): {_normal(m): p for m, p in ms.items()} for b, ms in table.items()}

    def lookup(self, backend: str, model: str) -> Price | None:
        """The price of `model` on `backend`: exact id, else the longest id it extends by a
        version or date suffix; None when the table does not know the model."""
        models = self._table.get(backend.lower())
        if not models:
            return None
        name = _normal(model)
        exact = models.get(name)
        if exact is not None:
            return exact
        best: str | None = None
        for known in models:
            if (
                name.startswith(known)
                and _VERSION_SUFFIX.match(name[len(known) :])
                and (best is None or len(known) > len(best))
            ):
                best = known
        return models[best] if best is not None else None

    def cost_usd(self, backend: str | None, model: str | None, usage: Usage) -> float | None:
        """USD for `usage` on `model`, None for an unknown model or when no tokens are known."""
        if not backend or not model:
            return None
        price = self.lookup(backend, model)
        return price.cost(usage) if price is not None else None

    def merged(self, overrides: Mapping[str, Mapping[str, Price | None]]) -> PriceTable:
        """A new table: these entries replace (or, when None, remove) the same ids."""
        table = {b: dict(ms) for b, ms in self._table.items()}
        for backend, models in overrides.items():
            target = table.setdefault(backend.lower(), {})
            for model, price in models.items():
                if price is None:
                    target.pop(_normal(model), None)
                else:
                    target[_normal(model)] = price
        return PriceTable(table)

    def as_json(self) -> dict[str, dict[str, dict[str, float | None]]]:
        return {
            b: {
                m: {
                    "input": p.input,
                    "output": p.output,
                    "cached_input": p.cached_input,
                    "cache_write": p.cache_write,
                }
                for m, p in sorted(ms.items())
            }
            for b, ms in sorted(self._table.items())
        }


DEFAULT_PRICES = PriceTable(DEFAULT_TABLE)


def _price(where: str, entry: Any) -> Price | None:
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping with input and output prices")
    unknown = set(entry) - {"input", "output", "cached_input", "cache_write"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")

    def number(name: str, required: bool) -> float | None:
        value = entry.get(name)
        if value is None:
            if required:
                raise ValueError(f"{where}: {name} is required (USD per 1M tokens)")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{where}: {name} must be a number >= 0 (got {value!r})")
        return float(value)

    return Price(
        input=number("input", True) or 0.0,
        output=number("output", True) or 0.0,
        cached_input=number("cached_input", False),
        cache_write=number("cache_write", False),
    )


def parse_prices(data: Any, source: str = "prices") -> dict[str, dict[str, Price | None]]:
    """Overrides from a price file's parsed content (see the module docstring)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a mapping of backend -> model -> prices")
    out: dict[str, dict[str, Price | None]] = {}
    for backend, models in data.items():
        if not isinstance(models, Mapping):
            raise ValueError(f"{source}: {backend}: expected a mapping of model -> prices")
        out[str(backend)] = {
            str(model): _price(f"{source}: {backend}: {model}", entry)
            for model, entry in models.items()
        }
    return out


def load_prices(path: str | Path, base: PriceTable = DEFAULT_PRICES) -> PriceTable:
    """The built-in table with the user's price file (JSON or YAML) merged over it."""
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if file.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    return base.merged(parse_prices(data or {}, str(file)))


def cost_usd(
    backend: str | None, model: str | None, usage: Usage, table: PriceTable = DEFAULT_PRICES
) -> float | None:
    """USD for `usage` on `backend`'s `model`; None when the model's price is not known."""
    return table.cost_usd(backend, model, usage)
