"""Key pools: round-robin over a backend's keys, with per key+model cooldowns and disabling.

`parse_retry_after` reads how long an upstream asked us to wait (every form the backends use);
`KeyPool` rotates over a backend's keys, skipping the ones that are cooling after a 429 (per
key and model) or disabled after a 401/403 (until restart).

Time: `KeyPool` runs on its own clock (monotonic by default, injectable for tests).
`parse_retry_after` compares HTTP dates and RFC 3339 times with `now`, which must therefore be
wall-clock epoch seconds (`time.time()`); what it returns is a duration, fit for either clock.

Keys are only ever named by their id (the variable that holds them), never by their value.
Not thread-safe: meant for one event loop.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from protocol.backends import ApiKey

log = logging.getLogger(__name__)

BASE_COOLDOWN = 30.0
MAX_COOLDOWN = 600.0

GOOGLE_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ANTHROPIC_RESET_HEADERS = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s?\s*$")


# --- Retry-After -----------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], body: Any, now: float) -> float | None:
    """Seconds the upstream asks us to wait, or None when it gives no usable hint.

    First usable source wins: `retry-after-ms`, `retry-after` (seconds or HTTP date), Google's
    `RetryInfo.retryDelay` in the error body, the latest of Anthropic's
    `anthropic-ratelimit-*-reset` times. `now` is epoch seconds. A garbled source is skipped;
    this never raises and never returns a negative number.
    """
    lower = _lower_headers(headers)
    for source in (
        lambda: _retry_after_ms(lower.get("retry-after-ms")),
        lambda: _retry_after(lower.get("retry-after"), now),
        lambda: _google_retry_delay(body),
        lambda: _anthropic_reset(lower, now),
    ):
        try:
            seconds = source()
        except Exception:  # a hint is a courtesy: a malformed one must never break a request
            seconds = None
        if seconds is not None:
            return seconds
    return None


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except Exception:
        return {}


def _finite(value: float) -> float | None:
    """A usable duration: finite, negatives clamped to 0 (a time already past)."""
    return max(0.0, value) if math.isfinite(value) else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _retry_after_ms(text: str | None) -> float | None:
    ms = _number(text)
    return None if ms is None else ms / 1000.0


def _retry_after(text: str | None, now: float) -> float | None:
    if text is None:
        return None
    seconds = _number(text)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates: RFC 9110 dates are always GMT
        return None
    return _finite(when.timestamp() - now)


def _google_retry_delay(body: Any) -> float | None:
    """`error.details[].retryDelay` of a `google.rpc.RetryInfo` ("12s", "1.5s")."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if isinstance(body, list) and body:  # streamed Gemini errors come as a JSON array
        body = body[0]
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == GOOGLE_RETRY_INFO:
            seconds = _duration(detail.get("retryDelay"))
            if seconds is not None:
                return seconds
    return None


def _duration(value: Any) -> float | None:
    """A protobuf Duration as JSON: "12s", "1.5s" (or the object form {seconds, nanos})."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        return float(match[1]) if match else None
    if isinstance(value, dict):
        seconds = float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def _anthropic_reset(lower: Mapping[str, str], now: float) -> float | None:
    """The latest of Anthropic's `*-reset` times (RFC 3339), as seconds from `now`."""
    times = [_rfc3339(lower[name]) for name in ANTHROPIC_RESET_HEADERS if name in lower]
    valid = [t for t in times if t is not None]
    return _finite(max(valid) - now) if valid else None


def _rfc3339(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


# --- Key pool --------------------------------------------------------------------------------


def backoff(streak: int) -> float:
    """The cooldown after the `streak`-th unhinted 429 in a row: 30, 60, 120 ... up to 600 s."""
    return min(MAX_COOLDOWN, BASE_COOLDOWN * 2 ** max(0, min(streak - 1, 32)))


class KeyPool:
    """A backend's keys in round-robin order, minus the ones cooling or disabled.

    A cooldown belongs to a key and a model: a 429 for model A leaves the key usable for model
    B. A cooldown with model None applies to every model. Asking with model None only sees the
    cooldowns that apply to every model.
    """

    def __init__(self, keys: list[ApiKey], clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = list(keys)
        self._clock = clock
        self._position = 0
        self._disabled: set[str] = set()
        self._until: dict[tuple[str, str | None], float] = {}  # (key id, model) -> clock time
        self._streak: dict[tuple[str, str | None], int] = {}  # 429s in a row, for the backoff

    def __len__(self) -> int:
        return len(self.keys)

    def next_key(self, model: str | None = None) -> ApiKey | None:
        """The next usable key in the rotation (and advance past it), or None when none is."""
        now = self._clock()
        count = len(self.keys)
        for step in range(count):
            index = (self._position + step) % count
            key = self.keys[index]
            if self._usable_at(key.key_id, model, now):
                self._position = (index + 1) % count
                return key
        return None

    def used(self, key_id: str) -> None:
        """A failover attempt took this key: the rotation goes on after it."""
        for index, key in enumerate(self.keys):
            if key.key_id == key_id:
                self._position = (index + 1) % len(self.keys)
                return

    def usable(self, model: str | None = None) -> list[ApiKey]:
        """The usable keys in rotation order from the current position (does not advance)."""
        now = self._clock()
        return [key for key in self._rotation() if self._usable_at(key.key_id, model, now)]

    def is_usable(self, key_id: str, model: str | None = None) -> bool:
        """Whether this key may be used for this model now (not disabled, not cooling)."""
        return self._usable_at(key_id, model, self._clock())

    def cooldown(self, key_id: str, model: str | None, seconds: float | None) -> float:
        """Cool a key for a model (None: every model); returns how long it will cool.

        With a hint (`parse_retry_after`), exactly that long; without, 30 s doubling on each
        repeat for this key and model, up to 600 s. Every cooldown counts in the streak that
        `succeeded` resets.
        """
        slot = (key_id, model)
        self._streak[slot] = self._streak.get(slot, 0) + 1
        hinted = _finite(seconds) if seconds is not None else None
        duration = hinted if hinted is not None else backoff(self._streak[slot])
        self._until[slot] = self._clock() + duration
        log.info("key %s cooling for %.1fs (model %s)", key_id, duration, model or "all")
        return duration

    def succeeded(self, key_id: str, model: str | None) -> None:
        """A request on this key worked: the next unhinted 429 starts the backoff at 30 s again."""
        self._streak.pop((key_id, model), None)
        self._streak.pop((key_id, None), None)

    def disable(self, key_id: str) -> None:
        """Take a key out of the rotation until restart (401/403); logged once, by id."""
        if key_id in self._disabled:
            return
        self._disabled.add(key_id)
        log.warning("key %s disabled until restart (upstream refused it)", key_id)

    def is_disabled(self, key_id: str) -> bool:
        return key_id in self._disabled

    def earliest_available(self, model: str | None = None) -> float | None:
        """Seconds until a key is usable for `model`: 0 when one is now, None when none will be.

        None means every key is disabled (or the pool is empty): no wait helps.
        """
        now = self._clock()
        waits = [
            max(0.0, self._cooling_until(key.key_id, model) - now)
            for key in self.keys
            if key.key_id not in self._disabled
        ]
        return min(waits) if waits else None

    def _rotation(self) -> list[ApiKey]:
        return self.keys[self._position :] + self.keys[: self._position]

    def _cooling_until(self, key_id: str, model: str | None) -> float:
        until = self._until.get((key_id, None), -math.inf)
        if model is not None:
            until = max(until, self._until.get((key_id, model), -math.inf))
        return until

    def _usable_at(self, key_id: str, model: str | None, now: float) -> bool:
        return key_id not in self._disabled and self._cooling_until(key_id, model) <= now
