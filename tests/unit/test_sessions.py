"""Session ids, the session record, and the store's idle expiry and LRU cap."""

import re

import pytest

from protocol.sessions import Session, SessionStore, session_id_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_explicit_id_wins() -> None:
    assert session_id_for("abc-123", "sk-key", "hello") == "abc-123"
    assert session_id_for("  abc  ", None, "") == "abc"


def test_blank_explicit_id_is_derived() -> None:
    assert session_id_for("  ", "sk-key", "hi") == session_id_for(None, "sk-key", "hi")


def test_derived_id_shape_and_stability() -> None:
    sid = session_id_for(None, "sk-secret-key", "Write a poem about the sea")
    assert re.fullmatch(r"s-[0-9a-f]{16}", sid)
    assert sid == session_id_for(None, "sk-secret-key", "Write a poem about the sea")
    # clients that re-wrap or trim the first message keep their session
    assert sid == session_id_for(None, "sk-secret-key", "  Write a poem\nabout  the sea \n")
    assert "secret" not in sid


def test_derived_id_differs_per_chat_and_per_key() -> None:
    base = session_id_for(None, "key-a", "first chat")
    assert session_id_for(None, "key-a", "second chat") != base
    assert session_id_for(None, "key-b", "first chat") != base
    assert session_id_for(None, None, "first chat") != base
    assert session_id_for(None, None, "first chat") == session_id_for(None, "", "first chat")


def test_key_and_text_boundary_is_unambiguous() -> None:
    assert session_id_for(None, "ab", "c") != session_id_for(None, "a", "bc")


def test_take_oneoff_returns_once() -> None:
    session = Session("s", created=0, last_seen=0, oneoff="openai:gpt-4o")
    assert session.take_oneoff() == "openai:gpt-4o"
    assert session.take_oneoff() is None
    assert session.oneoff is None


def test_get_creates_then_returns_the_same_session() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock)
    session = store.get("a")
    assert (session.id, session.created, session.last_seen, session.requests) == (
        "a",
        1000,
        1000,
        0,
    )
    assert session.model is None and session.oneoff is None
    session.model = "anthropic:claude"
    clock.now = 1010
    again = store.get("a")
    assert again is session
    assert (again.created, again.last_seen, again.model) == (1000, 1010, "anthropic:claude")
    assert len(store) == 1


def test_peek_neither_creates_nor_touches() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock)
    assert store.peek("a") is None
    assert len(store) == 0
    store.get("a")
    clock.now += 50
    peeked = store.peek("a")
    assert peeked is not None and peeked.last_seen == 1000
    assert "a" in store and "b" not in store


def test_idle_sessions_expire() -> None:
    clock = FakeClock()
    store = SessionStore(idle_seconds=60, clock=clock)
    store.get("a").project = "old"
    store.get("b")
    clock.now += 30
    store.get("b")  # b is used again, a is not
    clock.now += 31  # a idle 61 s, b idle 31 s
    assert store.peek("a") is None
    assert store.peek("b") is not None
    assert len(store) == 1
    fresh = store.get("a")  # a new session under the same id, without the old overrides
    assert fresh.project is None and fresh.created == clock.now
    clock.now += 61
    assert len(store) == 0


def test_exactly_idle_seconds_is_still_alive() -> None:
    clock = FakeClock()
    store = SessionStore(idle_seconds=60, clock=clock)
    store.get("a")
    clock.now += 60
    assert store.peek("a") is not None


def test_least_recently_used_is_evicted_at_the_cap() -> None:
    clock = FakeClock()
    store = SessionStore(max_sessions=2, clock=clock)
    store.get("a")
    store.get("b")
    store.get("a")  # b is now the least recently used
    store.get("c")
    assert len(store) == 2
    assert store.peek("b") is None
    assert store.peek("a") is not None and store.peek("c") is not None


def test_limits_changed_on_a_live_store_apply_at_the_next_call() -> None:
    clock = FakeClock()
    store = SessionStore(clock=clock)
    for name in "abcde":
        store.get(name)
    store.max_sessions = 2
    assert len(store) == 2
    assert store.peek("d") is not None and store.peek("e") is not None
    store.idle_seconds = 5
    clock.now += 6
    assert len(store) == 0


def test_expiry_is_amortised_from_the_old_end() -> None:
    clock = FakeClock()
    store = SessionStore(idle_seconds=10, clock=clock)
    for n in range(1000):
        clock.now += 0.01
        store.get(f"s{n}")
    clock.now += 10 - 5  # the first half (older than 10 s) goes, the rest stays
    assert 490 <= len(store) <= 510
    assert store.peek("s999") is not None and store.peek("s0") is None


@pytest.mark.parametrize(("idle", "cap"), [(0, 10), (-1, 10), (60, 0)])
def test_invalid_store_settings(idle: float, cap: int) -> None:
    with pytest.raises(ValueError):
        SessionStore(idle_seconds=idle, max_sessions=cap)
