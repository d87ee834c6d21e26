"""Reasoning and temperature across protocols: the one table, and the rules each backend needs.

Every codec renders a converted request's reasoning from this table (the lead can replace it
with `set_table`, built by `ReasoningTable.from_config` from the `mitm.conf` value). A request
forwarded to its own protocol keeps its own reasoning fields byte for byte; the table is used
only when converting or when a session override edited the canonical value.

Effort -> each backend (the defaults)
-------------------------------------

| effort  | OpenAI `reasoning_effort` | OpenRouter `reasoning` | Anthropic `budget_tokens` | Gemini 2.5 `thinkingBudget` | Gemini 3 `thinkingLevel` |
|---------|---------------------------|------------------------|---------------------------|-----------------------------|--------------------------|
| none    | none                      | {"effort": "none"}     | (thinking off)            | 0                           | MINIMAL                  |
| minimal | minimal                   | {"effort": "minimal"}  | 1024                      | 512                         | MINIMAL                  |
| low     | low                       | {"effort": "low"}      | 2048                      | 1024                        | LOW                      |
| medium  | medium                    | {"effort": "medium"}   | 8192                      | 8192                        | MEDIUM                   |
| high    | high                      | {"effort": "high"}     | 16384                     | 24576                       | HIGH                     |
| xhigh   | xhigh                     | {"effort": "xhigh"}    | 24576                     | 32768                       | HIGH                     |
| max     | max                       | {"effort": "xhigh"}    | 30720                     | 32768                       | HIGH                     |

(Only the newest OpenAI models take `xhigh`/`max`; for older ones set
`openai_effort: {xhigh: high, max: high}`.)

Budget -> effort (an Anthropic or Gemini 2.5 budget sent to OpenAI or Gemini 3; OpenRouter
takes the budget itself as `max_tokens`): the first effort whose ceiling the budget fits.

| budget_tokens      | effort              |
|--------------------|---------------------|
| 0                  | none (thinking off) |
| 1 .. 4096          | low                 |
| 4097 .. 12288      | medium              |
| above 12288        | high                |
| negative (dynamic) | (backend's default) |

Every table budget maps back to its own effort. `minimal` and `none` are never derived from a
positive budget by default, since not every OpenAI model accepts them.

Rules on top of the table
-------------------------
- Which value wins: a request (or session) may carry both an effort and a budget. Anthropic and
  Gemini 2.5 take the budget, OpenAI, OpenRouter and Gemini 3 take the effort. Thinking that is
  on with neither (Anthropic adaptive, Gemini's -1) is the backend's default: Anthropic gets the
  `enabled_effort` budget, Gemini 2.5 gets -1, the others get nothing (OpenRouter
  `{"enabled": true}`).
- Thinking off (`enabled` false, budget 0 or effort `none`): OpenAI gets no `reasoning_effort`
  (unless the effort itself was `none`), OpenRouter the `none` object, Anthropic no `thinking`,
  Gemini 2.5 budget 0 (128 for 2.5 Pro, which cannot turn thinking off), Gemini 3 its lowest
  level (3 Pro models take only `LOW`/`HIGH`: the level is moved to the nearest of
  `gemini_pro_levels`, upwards on a tie).
- Anthropic: `budget_tokens` is never below 1024 and always below `max_tokens`; when
  `max_tokens` is not larger than the budget it is raised to budget + 1024, but not above
  `anthropic_max_tokens` (32000, the smallest max output among Claude's thinking models, or the
  request's own `max_tokens` if larger), in which case the budget is lowered to fit.
- Gemini 2.5 budgets are kept in the model's range: 2.5 Pro 128..32768, 2.5 Flash 0..24576,
  2.5 Flash-Lite 0 or 512..24576 (-1 stays -1). When converting, `includeThoughts` is set
  when thinking is on and the client did not say, so the thoughts come back to the client.
- Temperature (`fit_to_target`): clamped to the target's range (Anthropic 0..1, OpenAI, the
  Responses API and Gemini 0..2). Anthropic with thinking on takes temperature 1 only, no
  `top_k` and `top_p` only from 0.95: the proxy sets 1, drops `top_k` and the low `top_p`.
- Sessions (`apply_session`): `!/set(reasoning-effort=...)` and `!/set(thinking-budget=...)`
  replace the request's reasoning (an effort alone clears the request's budget and vice versa,
  so the override is what each backend sees); a session temperature fills in only when the
  request has none. Overrides are applied to each new request, so `!/unset` restores the
  request's own values.

Overriding (`mitm.conf`)
------------------------
Give any part of the table; the rest keeps the defaults. Mappings merge key by key, except
`effort_ceilings`, which is replaced whole (list every threshold you want)::

    reasoning_table:
      anthropic_budget: {high: 20000}
      gemini_level: {medium: high}
      effort_ceilings: {minimal: 512, low: 4096, medium: 12288}
      effort_above: high

Keys: `anthropic_budget`, `gemini_budget`, `gemini_level`, `gemini_pro_levels`,
`openai_effort`, `openrouter`, `effort_ceilings`, `effort_above`, `enabled_effort`,
`anthropic_max_tokens`. A bad key or value raises `ValueError` naming it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from protocol.canonical import ChatRequest, Reasoning

log = logging.getLogger(__name__)

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
GeminiLevel = Literal["minimal", "low", "medium", "high"]
TargetProtocol = Literal["openai", "anthropic", "gemini", "responses"]

EFFORTS: Final[tuple[Effort, ...]] = get_args(Effort)
_RANK: Final = {e: i for i, e in enumerate(EFFORTS)}
_LEVEL_RANK: Final = {lv: i for i, lv in enumerate(get_args(GeminiLevel))}

ANTHROPIC_MIN_BUDGET: Final = 1024
"""Anthropic's smallest `budget_tokens`."""
ANTHROPIC_ANSWER_ROOM: Final = 1024
"""Tokens kept above the budget when `max_tokens` has to be raised for it."""

TEMPERATURE_RANGE: Final[dict[str, tuple[float, float]]] = {
    "anthropic": (0.0, 1.0),
    "openai": (0.0, 2.0),
    "responses": (0.0, 2.0),
    "gemini": (0.0, 2.0),
}
"""The temperature each target accepts (OpenRouter speaks `openai`)."""

_OPENROUTER_KEYS: Final = frozenset({"effort", "max_tokens", "exclude", "enabled", "summary"})
_TOP_P_WITH_THINKING: Final = 0.95
_GEMINI_VERSION: Final = re.compile(r"gemini-(\d+)")
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")


class ReasoningTable(BaseModel):
    """The mapping between efforts, budgets and levels (defaults: the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    anthropic_budget: dict[Effort, int] = {
        "minimal": 1024,
        "low": 2048,
        "medium": 8192,
        "high": 16384,
        "xhigh": 24576,
        "max": 30720,
    }
    """Effort -> Anthropic `thinking.budget_tokens` (`none` turns thinking off)."""
    gemini_budget: dict[Effort, int] = {
        "none": 0,
        "minimal": 512,
        "low": 1024,
        "medium": 8192,
        "high": 24576,
        "xhigh": 32768,
        "max": 32768,
    }
    """Effort -> Gemini 2.5 `thinkingBudget` (then kept in the model's range)."""
    gemini_level: dict[Effort, GeminiLevel] = {
        "none": "minimal",
        "minimal": "minimal",
        "low": "low",
        "medium": "medium",
        "high": "high",
        "xhigh": "high",
        "max": "high",
    }
    """Effort -> Gemini 3 `thinkingLevel`."""
    gemini_pro_levels: tuple[GeminiLevel, ...] = ("low", "high")
    """The levels Gemini 3 Pro models accept; other levels move to the nearest of these."""
    openai_effort: dict[Effort, Effort] = {
        "none": "none",
        "minimal": "minimal",
        "low": "low",
        "medium": "medium",
        "high": "high",
        "xhigh": "xhigh",
        "max": "max",
    }
    """Canonical effort -> OpenAI `reasoning_effort`."""
    openrouter: dict[Effort, dict[str, Any]] = {
        "none": {"effort": "none"},
        "minimal": {"effort": "minimal"},
        "low": {"effort": "low"},
        "medium": {"effort": "medium"},
        "high": {"effort": "high"},
        "xhigh": {"effort": "xhigh"},
        "max": {"effort": "xhigh"},
    }
    """Effort -> OpenRouter `reasoning` object."""
    effort_ceilings: dict[Effort, int] = {"low": 4096, "medium": 12288}
    """Budget -> effort: the first effort (in effort order) whose ceiling the budget fits."""
    effort_above: Effort = "high"
    """The effort of a budget above every ceiling."""
    enabled_effort: Effort = "medium"
    """The effort used when thinking is on with neither effort nor budget and a budget is due."""
    anthropic_max_tokens: int = 32000
    """The most `max_tokens` is raised to for the thinking budget."""

    @field_validator("anthropic_budget")
    @classmethod
    def _anthropic_budgets(cls, value: dict[Effort, int]) -> dict[Effort, int]:
        if "none" in value:
            raise ValueError("'none' turns Anthropic thinking off and takes no budget")
        for effort, budget in value.items():
            if budget < ANTHROPIC_MIN_BUDGET:
                raise ValueError(f"{effort}: must be at least {ANTHROPIC_MIN_BUDGET}, got {budget}")
        return value

    @field_validator("gemini_budget")
    @classmethod
    def _gemini_budgets(cls, value: dict[Effort, int]) -> dict[Effort, int]:
        for effort, budget in value.items():
            if budget < -1:
                raise ValueError(f"{effort}: must be -1 (dynamic), 0 (off) or more, got {budget}")
        return value

    @field_validator("openrouter")
    @classmethod
    def _openrouter_objects(
        cls, value: dict[Effort, dict[str, Any]]
    ) -> dict[Effort, dict[str, Any]]:
        for effort, obj in value.items():
            unknown = sorted(set(obj) - _OPENROUTER_KEYS)
            if unknown:
                raise ValueError(
                    f"{effort}: unknown reasoning field {unknown[0]!r} "
                    f"(known: {', '.join(sorted(_OPENROUTER_KEYS))})"
                )
        return value

    @field_validator("gemini_pro_levels")
    @classmethod
    def _pro_levels(cls, value: tuple[GeminiLevel, ...]) -> tuple[GeminiLevel, ...]:
        if not value:
            raise ValueError("needs at least one level")
        return tuple(sorted(set(value), key=_LEVEL_RANK.__getitem__))

    @field_validator("effort_ceilings")
    @classmethod
    def _ceilings(cls, value: dict[Effort, int]) -> dict[Effort, int]:
        if "none" in value:
            raise ValueError("'none' is budget 0 and takes no ceiling")
        ordered = sorted(value.items(), key=lambda item: _RANK[item[0]])
        last = 0
        for effort, ceiling in ordered:
            if ceiling <= last:
                raise ValueError(
                    f"{effort}: ceilings must be positive and grow with the effort, got {ceiling}"
                )
            last = ceiling
        return dict(ordered)

    @field_validator("anthropic_max_tokens")
    @classmethod
    def _max_tokens(cls, value: int) -> int:
        least = ANTHROPIC_MIN_BUDGET + ANTHROPIC_ANSWER_ROOM
        if value < least:
            raise ValueError(f"must be at least {least}, got {value}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ReasoningTable:
        for name in ("gemini_budget", "gemini_level", "openai_effort", "openrouter"):
            missing = [e for e in EFFORTS if e not in getattr(self, name)]
            if missing:
                raise ValueError(f"{name}: no value for {', '.join(missing)}")
        missing = [e for e in EFFORTS if e != "none" and e not in self.anthropic_budget]
        if missing:
            raise ValueError(f"anthropic_budget: no value for {', '.join(missing)}")
        top = max(self.effort_ceilings, key=_RANK.__getitem__, default=None)
        if top is not None and _RANK[self.effort_above] <= _RANK[top]:
            raise ValueError(
                f"effort_above: {self.effort_above!r} must be a higher effort than {top!r}"
            )
        return self

    @classmethod
    def from_config(cls, mapping: Mapping[str, Any] | None) -> ReasoningTable:
        """The defaults with `mapping` (a user's partial table) merged over them.

        Mapping-valued entries merge key by key; `effort_ceilings` is replaced whole (its keys
        are the budget thresholds, a partial merge would mix two scales). Raises `ValueError`
        naming the bad key.
        """
        if mapping is None:
            return DEFAULT_TABLE
        if not isinstance(mapping, Mapping):
            raise ValueError("reasoning table: must be a mapping of table names to values")
        defaults = DEFAULT_TABLE.model_dump()
        merged = dict(defaults)
        for key, value in mapping.items():
            if key not in defaults:
                known = ", ".join(sorted(defaults))
                raise ValueError(f"reasoning table: unknown key {key!r} (known: {known})")
            default = defaults[key]
            if isinstance(default, dict) and key != "effort_ceilings":
                if not isinstance(value, Mapping):
                    raise ValueError(f"reasoning table: {key}: must be a mapping of efforts")
                merged[key] = {**default, **value}
            else:
                merged[key] = value
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"] if p != "[key]")
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"reasoning table: {where or 'table'}: {message}") from None


DEFAULT_TABLE: Final = ReasoningTable()
_table: ReasoningTable = DEFAULT_TABLE


def set_table(table: ReasoningTable | None) -> None:
    """Install the table the codecs use from now on (None: back to the defaults)."""
    global _table
    _table = table if table is not None else DEFAULT_TABLE


def current_table() -> ReasoningTable:
    """The table installed by `set_table` (the defaults until then)."""
    return _table


# ----------------------------------------------------------------------------------------------
# reading a canonical Reasoning
# ----------------------------------------------------------------------------------------------


def thinking_off(r: Reasoning) -> bool:
    """True when the reasoning says thinking is off (enabled false, budget 0, effort none)."""
    return r.enabled is False or r.budget_tokens == 0 or r.effort == "none"


def _budget(r: Reasoning) -> int | None:
    """The positive budget the reasoning names (a negative one means "dynamic": None)."""
    return r.budget_tokens if r.budget_tokens is not None and r.budget_tokens > 0 else None


def effort_for_budget(budget: int, table: ReasoningTable | None = None) -> Effort | None:
    """The nearest effort for a token budget: 0 is `none`, a negative (dynamic) budget None."""
    if budget == 0:
        return "none"
    if budget < 0:
        return None
    t = table or _table
    for effort, ceiling in t.effort_ceilings.items():
        if budget <= ceiling:
            return effort
    return t.effort_above


def _effort(r: Reasoning, t: ReasoningTable, *, effort_first: bool) -> Effort | None:
    """The effort the (on) reasoning stands for, from its effort or its budget."""
    budget = _budget(r)
    if r.effort is not None and (effort_first or budget is None):
        return r.effort
    if budget is not None:
        return effort_for_budget(budget, t)
    return None


# ----------------------------------------------------------------------------------------------
# per backend
# ----------------------------------------------------------------------------------------------


def openai_effort(r: Reasoning, table: ReasoningTable | None = None) -> str | None:
    """OpenAI's `reasoning_effort` for `r`, or None to leave it out (the model's default)."""
    t = table or _table
    if r.effort == "none":
        return t.openai_effort["none"]
    if thinking_off(r):
        return None
    effort = _effort(r, t, effort_first=True)
    return None if effort is None else t.openai_effort[effort]


def openrouter_reasoning(
    r: Reasoning, table: ReasoningTable | None = None
) -> dict[str, Any] | None:
    """OpenRouter's `reasoning` object for `r` (a budget is passed on as `max_tokens`)."""
    t = table or _table
    out: dict[str, Any]
    if thinking_off(r):
        out = dict(t.openrouter["none"])
    elif r.effort is not None:
        out = dict(t.openrouter[r.effort])
    elif (budget := _budget(r)) is not None:
        out = {"max_tokens": budget}
    elif r.enabled:
        out = {"enabled": True}
    else:
        out = {}
    if r.include_thoughts is False:
        out["exclude"] = True
    return out or None


def anthropic_thinking(
    r: Reasoning | None, max_tokens: int, table: ReasoningTable | None = None
) -> tuple[dict[str, Any] | None, int]:
    """Anthropic's `thinking` object for `r` and the `max_tokens` that goes with it.

    The budget is `r`'s own, else the table's for its effort, else (thinking on with neither)
    the `enabled_effort` budget; at least 1024 and below `max_tokens`, which is raised when
    needed (see the module docstring). None when thinking is off or not asked for.
    """
    t = table or _table
    if r is None or thinking_off(r):
        return None, max_tokens
    budget = _budget(r)
    if budget is None:
        effort = r.effort if r.effort is not None else t.enabled_effort if r.enabled else None
        if effort is None:
            return None, max_tokens
        budget = t.anthropic_budget[effort]
    if budget < ANTHROPIC_MIN_BUDGET:
        log.debug(
            "thinking budget %d raised to Anthropic's minimum %d", budget, ANTHROPIC_MIN_BUDGET
        )
        budget = ANTHROPIC_MIN_BUDGET
    if max_tokens <= budget:
        ceiling = max(t.anthropic_max_tokens, max_tokens)
        raised = min(budget + ANTHROPIC_ANSWER_ROOM, ceiling)
        if raised - ANTHROPIC_ANSWER_ROOM < budget:
            log.debug("thinking budget %d lowered to fit max_tokens %d", budget, raised)
            budget = raised - ANTHROPIC_ANSWER_ROOM
        log.debug("max_tokens %d raised to %d above the thinking budget", max_tokens, raised)
        max_tokens = raised
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def gemini_version(model: str) -> int | None:
    """The major version in a Gemini model name (`gemini-2.5-pro` -> 2), or None."""
    match = _GEMINI_VERSION.search(model.lower())
    return int(match.group(1)) if match else None


def _name_words(model: str) -> set[str]:
    return set(_WORD_SPLIT.split(model.lower()))


def _gemini25_range(model: str) -> tuple[int, int, bool]:
    """(least, most, may be 0) of `thinkingBudget` for a Gemini 2.5 model name."""
    words = _name_words(model)
    if "pro" in words:
        return 128, 32768, False
    if "flash" in words and "lite" in words:
        return 512, 24576, True
    if "flash" in words:
        return 1, 24576, True
    return 1, 1 << 31, True


def _fit_gemini_budget(budget: int, model: str) -> int:
    if budget < 0:
        return -1
    least, most, off_ok = _gemini25_range(model)
    if budget == 0 and off_ok:
        return 0
    fitted = min(max(budget, least), most)
    if fitted != budget:
        log.debug("thinkingBudget %d moved to %d, the range of %s", budget, fitted, model)
    return fitted


def _fit_pro_level(level: GeminiLevel, model: str, t: ReasoningTable) -> GeminiLevel:
    if "pro" not in _name_words(model) or level in t.gemini_pro_levels:
        return level
    rank = _LEVEL_RANK[level]
    # nearest accepted level; on a tie the higher one
    best = min(t.gemini_pro_levels, key=lambda lv: (abs(_LEVEL_RANK[lv] - rank), -_LEVEL_RANK[lv]))
    log.debug("thinkingLevel %s moved to %s, which %s accepts", level, best, model)
    return best


def gemini_thinking_config(
    r: Reasoning,
    model: str,
    table: ReasoningTable | None = None,
    *,
    include_default: bool = False,
) -> dict[str, Any] | None:
    """Gemini's `generationConfig.thinkingConfig` for `r` on `model`.

    Gemini 3 and later get `thinkingLevel`, other models `thinkingBudget` (never both).
    `include_default` sets `includeThoughts` when thinking is on and `r` does not say (used when
    converting, so the thoughts reach the client). None when there is nothing to say.
    """
    t = table or _table
    off = thinking_off(r)
    out: dict[str, Any] = {}
    version = gemini_version(model)
    if version is not None and version >= 3:
        effort: Effort | None = "none" if off else _effort(r, t, effort_first=True)
        if effort is not None:
            out["thinkingLevel"] = _fit_pro_level(t.gemini_level[effort], model, t).upper()
    else:
        budget = _budget(r)
        if off:
            value: int | None = 0
        elif budget is not None:
            value = budget
        elif r.effort is not None:
            value = t.gemini_budget[r.effort]
        elif r.enabled:
            value = -1
        else:
            value = None
        if value is not None:
            out["thinkingBudget"] = _fit_gemini_budget(value, model)
    if r.include_thoughts is not None:
        out["includeThoughts"] = r.include_thoughts
    elif include_default and not off and (out or r.enabled):
        out["includeThoughts"] = True
    return out or None


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------


def clamp_temperature(value: float, target: str) -> float:
    """`value` moved into the target protocol's temperature range."""
    low, high = TEMPERATURE_RANGE.get(target, (0.0, 2.0))
    return min(max(value, low), high)


def thinking_sampling(
    temperature: float | None, top_p: float | None, top_k: int | None
) -> tuple[float | None, float | None, int | None, list[str]]:
    """Sampling Anthropic accepts with thinking on: temperature 1, no top_k, top_p >= 0.95.

    Returns the fitted (temperature, top_p, top_k) and a note per change.
    """
    notes: list[str] = []
    if temperature is not None and temperature != 1:
        notes.append(f"temperature {temperature} set to 1: Anthropic requires 1 with thinking")
        temperature = 1.0
    if top_k is not None:
        notes.append(f"top_k {top_k} dropped: Anthropic does not allow it with thinking")
        top_k = None
    if top_p is not None and top_p < _TOP_P_WITH_THINKING:
        notes.append(f"top_p {top_p} dropped: Anthropic wants 0.95..1 with thinking")
        top_p = None
    return temperature, top_p, top_k, notes


def _client_anthropic_thinking_on(req: ChatRequest) -> bool:
    """Whether an Anthropic client's own request has thinking on (its `thinking`, enabled or
    adaptive, parses as enabled=True; an `output_config.effort` alone does not turn it on)."""
    r = req.reasoning
    return req.source == "anthropic" and r is not None and not thinking_off(r) and r.enabled is True


def fit_to_target(req: ChatRequest, target_protocol: str, model: str) -> list[str]:
    """Fit `req`'s sampling to the target in place; a note per change (none: unchanged).

    `target_protocol` is `openai` (also for OpenRouter), `anthropic`, `gemini` or `responses`;
    `model` is the backend's model name (kept for rules that depend on it).
    """
    if target_protocol not in TEMPERATURE_RANGE:
        raise ValueError(f"unknown target protocol {target_protocol!r}")
    notes: list[str] = []
    if req.temperature is not None:
        clamped = clamp_temperature(req.temperature, target_protocol)
        if clamped != req.temperature:
            notes.append(
                f"temperature {req.temperature} clamped to {clamped} ({target_protocol} range)"
            )
            req.temperature = clamped
    # An Anthropic client's own thinking: its body may go to Anthropic as it came, so its
    # sampling is fitted here. A request from another protocol gets thinking (or not: forced
    # tool use, a tool loop whose assistant turn has no thinking block) when the Anthropic codec
    # renders it, which fits the sampling then and only then.
    if target_protocol == "anthropic" and _client_anthropic_thinking_on(req):
        req.temperature, req.top_p, req.top_k, more = thinking_sampling(
            req.temperature, req.top_p, req.top_k
        )
        notes.extend(more)
    for note in notes:
        log.debug("%s: %s", model, note)
    return notes


# ----------------------------------------------------------------------------------------------
# session overrides
# ----------------------------------------------------------------------------------------------


def apply_session(
    req: ChatRequest,
    *,
    effort: str | None = None,
    budget: int | None = None,
    temperature: float | None = None,
) -> list[str]:
    """Apply a session's overrides to `req` in place; a note per change (none: unchanged).

    `effort` and `budget` win over the request's own reasoning: an effort alone clears the
    request's budget, a budget alone clears its effort (budget 0 or effort `none`: thinking
    off; a negative budget: on, the backend's default amount). `temperature` fills in only
    when the request has none. `include_thoughts` stays the request's.
    """
    notes: list[str] = []
    if temperature is not None and req.temperature is None:
        req.temperature = temperature
        notes.append(f"temperature {temperature} from the session")
    if effort is None and budget is None:
        return notes
    if effort is not None and effort not in _RANK:
        raise ValueError(f"unknown reasoning effort {effort!r} (known: {', '.join(EFFORTS)})")
    old = req.reasoning
    r = old.model_copy() if old is not None else Reasoning()
    if effort is not None:
        r.effort = effort  # checked against EFFORTS above
        if budget is None:
            r.budget_tokens = None
    if budget is not None:
        r.budget_tokens = budget if budget >= 0 else None
        if effort is None:
            r.effort = None
    r.enabled = not (effort == "none" or budget == 0)
    if old is None or r != old:
        req.reasoning = r
        was = old.model_dump(exclude_none=True) if old is not None else "none"
        now = r.model_dump(exclude_none=True)
        notes.append(f"reasoning {now} from the session (request had {was})")
    return notes
