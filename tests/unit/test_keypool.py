"""Key pools: round-robin, cooldowns per key+model with a fake clock, disabling, Retry-After."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from email.utils import formatdate

import pytest

from protocol.backends import ApiKey
from protocol.keypool import KeyPool, backoff, parse_retry_after

NOW = 1_700_000_000.0  # wall-clock epoch seconds for the Retry-After tests


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_pool(n: int = 3) -> tuple[KeyPool, FakeClock]:
    clock = FakeClock()
    keys = [ApiKey(f"K{i}", f"secret-{i}") for i in range(n)]
    return KeyPool(keys, clock=clock), clock


def ids(keys: list[ApiKey]) -> list[str]:
    return [k.key_id for k in keys]


def take(pool: KeyPool, n: int, model: str | None = "m") -> list[str | None]:
    return [k.key_id if (k := pool.next_key(model)) else None for _ in range(n)]


# --- round robin ---------------------------------------------------------------------------


def test_round_robin_wraps() -> None:
    pool, _ = make_pool()
    assert take(pool, 7) == ["K0", "K1", "K2", "K0", "K1", "K2", "K0"]


def test_empty_pool() -> None:
    pool = KeyPool([])
    assert pool.next_key("m") is None
    assert pool.usable("m") == []
    assert pool.earliest_available("m") is None


def test_skips_cooling_and_disabled_keys() -> None:
    pool, _ = make_pool()
    pool.cooldown("K1", "m", 10)
    pool.disable("K2")
    assert take(pool, 3) == ["K0", "K0", "K0"]


def test_none_when_nothing_usable() -> None:
    pool, _ = make_pool(2)
    pool.cooldown("K0", "m", 5)
    pool.disable("K1")
    assert pool.next_key("m") is None


def test_usable_starts_at_current_position_and_does_not_advance() -> None:
    pool, _ = make_pool()
    pool.next_key("m")  # K0 used: rotation now at K1
    assert ids(pool.usable("m")) == ["K1", "K2", "K0"]
    pool.cooldown("K2", "m", 5)
    assert ids(pool.usable("m")) == ["K1", "K0"]
    assert pool.next_key("m") == ApiKey("K1", "secret-1")


# --- cooldowns -------------------------------------------------------------------------------


def test_cooldown_is_per_key_and_model() -> None:
    pool, _ = make_pool(2)
    pool.cooldown("K0", "model-a", 60)
    assert ids(pool.usable("model-a")) == ["K1"]
    assert ids(pool.usable("model-b")) == ["K0", "K1"]
    assert ids(pool.usable(None)) == ["K0", "K1"]
    assert not pool.is_usable("K0", "model-a")
    assert pool.is_usable("K0", "model-b")


def test_cooldown_without_model_applies_to_every_model() -> None:
    pool, _ = make_pool(2)
    pool.cooldown("K0", None, 60)
    for model in ("model-a", "model-b", None):
        assert ids(pool.usable(model)) == ["K1"]


def test_hinted_cooldown_lasts_exactly_that_long() -> None:
    pool, clock = make_pool(1)
    assert pool.cooldown("K0", "m", 12.5) == 12.5
    clock.advance(12.4)
    assert pool.next_key("m") is None
    clock.advance(0.1)
    assert pool.next_key("m") == ApiKey("K0", "secret-0")


def test_backoff_doubles_up_to_ten_minutes() -> None:
    pool, clock = make_pool(1)
    seen = []
    for _ in range(7):
        seen.append(pool.cooldown("K0", "m", None))
        clock.advance(seen[-1] - 0.001)
        assert pool.next_key("m") is None
        clock.advance(0.001)
        assert pool.next_key("m") is not None
    assert seen == [30, 60, 120, 240, 480, 600, 600]
    assert backoff(100) == 600


def test_backoff_streak_is_per_key_and_model_and_resets_after_success() -> None:
    pool, _ = make_pool(2)
    assert pool.cooldown("K0", "a", None) == 30
    assert pool.cooldown("K0", "a", None) == 60
    assert pool.cooldown("K0", "b", None) == 30  # other model: own streak
    assert pool.cooldown("K1", "a", None) == 30  # other key: own streak
    pool.succeeded("K0", "a")
    assert pool.cooldown("K0", "a", None) == 30
    assert pool.cooldown("K0", "b", None) == 60  # untouched by a success on model a


def test_hinted_cooldowns_count_in_the_streak() -> None:
    pool, _ = make_pool(1)
    pool.cooldown("K0", "m", 5)
    assert pool.cooldown("K0", "m", None) == 60


def test_negative_hint_is_zero() -> None:
    pool, _ = make_pool(1)
    assert pool.cooldown("K0", "m", -3) == 0
    assert pool.next_key("m") is not None


# --- disabling -------------------------------------------------------------------------------


def test_disabled_key_stays_out_and_is_logged_once_by_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool, clock = make_pool(2)
    with caplog.at_level(logging.WARNING, logger="protocol.keypool"):
        pool.disable("K1")
        pool.disable("K1")
    clock.advance(10_000)
    assert take(pool, 3) == ["K0", "K0", "K0"]
    assert pool.is_disabled("K1")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "K1" in messages[0] and "secret" not in messages[0]


# --- earliest_available ----------------------------------------------------------------------


def test_earliest_available() -> None:
    pool, clock = make_pool(3)
    assert pool.earliest_available("m") == 0.0
    pool.cooldown("K0", "m", 50)
    pool.cooldown("K1", None, 20)
    pool.cooldown("K2", "m", 40)
    assert pool.earliest_available("m") == 20
    assert pool.earliest_available("other") == 0.0  # K0 and K2 only cool for "m"
    clock.advance(15)
    assert pool.earliest_available("m") == pytest.approx(5)
    pool.disable("K1")
    assert pool.earliest_available("m") == pytest.approx(25)
    pool.disable("K0")
    pool.disable("K2")
    assert pool.earliest_available("m") is None


# --- Retry-After ---------------------------------------------------------------------------


def rfc3339(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": " 0 "}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "1500.5"}, 1.5005),
        ({"retry-after-ms": "2000", "retry-after": "9"}, 2.0),  # ms wins
        ({"retry-after": formatdate(NOW + 90, usegmt=True)}, 90.0),
        ({"retry-after": formatdate(NOW - 90, usegmt=True)}, 0.0),  # past: never negative
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, None, NOW) == (
        pytest.approx(expected) if expected is not None else None
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "soon"},
        {"retry-after": "-5"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after": ""},
        {"retry-after": "Mon, 99 Foo 2024 25:61:00 GMT"},
        {"retry-after-ms": "abc"},
        {"anthropic-ratelimit-requests-reset": "not a time"},
        {"anthropic-ratelimit-requests-reset": "2024-01-01T00:00:00"},  # no zone: ambiguous
    ],
)
def test_retry_after_garbage_is_ignored(headers: dict[str, str]) -> None:
    assert parse_retry_after(headers, None, NOW) is None


def test_garbage_source_falls_through_to_the_next() -> None:
    headers = {"retry-after-ms": "x", "retry-after": "4"}
    assert parse_retry_after(headers, None, NOW) == 4.0


def google_body(delay: object) -> dict[str, object]:
    return {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
            ],
        }
    }


@pytest.mark.parametrize(("delay", "expected"), [("12s", 12.0), ("1.5s", 1.5), ("0s", 0.0)])
def test_google_retry_info(delay: str, expected: float) -> None:
    assert parse_retry_after({}, google_body(delay), NOW) == expected


def test_google_retry_info_as_text_bytes_or_streamed_array() -> None:
    import json

    text = json.dumps(google_body("3s"))
    assert parse_retry_after({}, text, NOW) == 3.0
    assert parse_retry_after({}, text.encode(), NOW) == 3.0
    assert parse_retry_after({}, [google_body("4s")], NOW) == 4.0


@pytest.mark.parametrize(
    "body",
    [
        google_body("soon"),
        google_body(None),
        {"error": {"details": "nope"}},
        {"error": "quota"},
        "not json",
        b"\xff\xfe",
        42,
        [],
    ],
)
def test_google_garbage_is_ignored(body: object) -> None:
    assert parse_retry_after({}, body, NOW) is None


def test_header_wins_over_google_body() -> None:
    assert parse_retry_after({"retry-after": "2"}, google_body("12s"), NOW) == 2.0


def test_anthropic_reset_headers_take_the_latest() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": rfc3339(NOW + 5),
        "Anthropic-RateLimit-Tokens-Reset": rfc3339(NOW + 30),
        "anthropic-ratelimit-input-tokens-reset": rfc3339(NOW + 12),
        "anthropic-ratelimit-output-tokens-reset": "garbage",
    }
    assert parse_retry_after(headers, None, NOW) == pytest.approx(30)


def test_anthropic_reset_in_the_past_and_with_offset() -> None:
    past = {"anthropic-ratelimit-requests-reset": rfc3339(NOW - 10)}
    assert parse_retry_after(past, None, NOW) == 0.0
    offset = {"anthropic-ratelimit-output-tokens-reset": "2023-11-14T23:13:40+01:00"}
    assert parse_retry_after(offset, None, NOW) == pytest.approx(20)


def test_retry_after_wins_over_anthropic_reset() -> None:
    headers = {"retry-after": "3", "anthropic-ratelimit-tokens-reset": rfc3339(NOW + 30)}
    assert parse_retry_after(headers, None, NOW) == 3.0


def test_broken_headers_object_never_raises() -> None:
    class Broken(Mapping[str, str]):
        def __getitem__(self, name: str) -> str:
            raise RuntimeError("boom")

        def __iter__(self) -> Iterator[str]:
            raise RuntimeError("boom")

        def __len__(self) -> int:
            return 1

    assert parse_retry_after(Broken(), None, NOW) is None


def test_a_key_used_by_failover_moves_the_rotation_past_it() -> None:
    keys = [ApiKey(f"K{i}", f"v{i}") for i in range(3)]
    pool = KeyPool(keys)
    assert pool.next_key() == keys[0]
    pool.used("K1")  # the failover took K1 after K0 failed
    assert pool.next_key() == keys[2]
    pool.used("nope")  # an unknown id changes nothing
    assert pool.next_key() == keys[0]
