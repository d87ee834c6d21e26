"""The usage object of OpenAI's two APIs, read and patched in one place.

Chat Completions and Responses report usage in the same shape under two sets of names
(`prompt_tokens` / `input_tokens`, `completion_tokens_details` / `output_tokens_details`...).
`read_usage` maps either to the canonical `Usage`; `patched_usage` gives back the object as the
backend sent it, with only what the canonical usage changed written over (a same-protocol answer
keeps every field the proxy does not know). How each API writes a usage object of its own
differs (Chat leaves out empty details, Responses always has them): that stays in each codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.canonical import Usage
from protocol.wire import copy_json, is_int


@dataclass(frozen=True, slots=True)
class UsageNames:
    input: str
    output: str
    input_details: str
    output_details: str
    cached_fallback: str | None = None  # a top-level cached count some servers send instead


CHAT = UsageNames(
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    cached_fallback="prompt_cache_hit_tokens",  # DeepSeek
)
RESPONSES = UsageNames(
    "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"
)


def _num(value: Any) -> int | None:
    return value if is_int(value) else None


def read_usage(raw: Any, names: UsageNames) -> Usage:
    """The canonical usage of a usage object (an empty `Usage` when it is not an object)."""
    if not isinstance(raw, dict):
        return Usage()
    given = raw.get(names.input_details)
    done = raw.get(names.output_details)
    given = given if isinstance(given, dict) else {}
    done = done if isinstance(done, dict) else {}
    cached = given.get("cached_tokens")
    if cached is None and names.cached_fallback is not None:
        cached = raw.get(names.cached_fallback)
    return Usage(
        input_tokens=_num(raw.get(names.input)),
        output_tokens=_num(raw.get(names.output)),
        cached_tokens=_num(cached),
        cache_creation_tokens=_num(given.get("cache_write_tokens")),
        reasoning_tokens=_num(done.get("reasoning_tokens")),
    )


def patched_usage(usage: Usage, raw: dict[str, Any], names: UsageNames) -> dict[str, Any]:
    """`raw` as it came, with what changed in `usage` (against `raw`'s own reading) written over;
    the total follows the two counts when either changed."""
    out = copy_json(raw)
    was = read_usage(raw, names)
    changed = False
    for field, key in (("input_tokens", names.input), ("output_tokens", names.output)):
        value = getattr(usage, field)
        if value != getattr(was, field):
            out[key] = value or 0
            changed = True
    if changed:
        out["total_tokens"] = (out.get(names.input) or 0) + (out.get(names.output) or 0)
    for field, parent, key in (
        ("cached_tokens", names.input_details, "cached_tokens"),
        ("cache_creation_tokens", names.input_details, "cache_write_tokens"),
        ("reasoning_tokens", names.output_details, "reasoning_tokens"),
    ):
        value = getattr(usage, field)
        if value != getattr(was, field) and value is not None:
            if not isinstance(out.get(parent), dict):
                out[parent] = {}
            out[parent][key] = value
    return out
