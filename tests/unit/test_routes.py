"""The failover route store: changes, name rules, config routes, persistence, the writer."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol.failover import Route
from protocol.routes import RouteStore
from protocol.usage_store import UsageRow, UsageStore


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "proxy.sqlite")


@pytest.fixture
def store(db: str) -> Iterator[RouteStore]:
    with RouteStore(db) as s:
        yield s


def reopened(db: str) -> RouteStore:
    """A new store on the file, as after a restart (use it as a context manager)."""
    return RouteStore(db)


def stored_names(db: str) -> list[str]:
    with reopened(db) as again:
        return again.names()


# ------------------------------------------------------------------------------------------------
# Changes and reads
# ------------------------------------------------------------------------------------------------


def test_changes_return_the_new_route() -> None:
    s = RouteStore()
    assert s.create("smart", "km") == Route("smart", "km", [])
    assert s.append("smart", ["openai:gpt-4o", "anthropic:claude-x"]) == Route(
        "smart", "km", ["openai:gpt-4o", "anthropic:claude-x"]
    )
    assert s.prepend("smart", ["gemini:g-1", "openai:o3"]).elements == [
        "gemini:g-1",
        "openai:o3",
        "openai:gpt-4o",
        "anthropic:claude-x",
    ]
    assert s.get("smart") == Route(
        "smart", "km", ["gemini:g-1", "openai:o3", "openai:gpt-4o", "anthropic:claude-x"]
    )
    assert s.clear("smart") == Route("smart", "km", [])
    assert s.delete("smart") == Route("smart", "km", [])
    assert s.get("smart") is None and s.names() == []


def test_names_are_exact_and_sorted() -> None:
    s = RouteStore()
    for name in ("b", "A", "a"):
        s.create(name, "m")
    assert s.names() == ["A", "a", "b"]
    assert s.get("B") is None
    assert [r.name for r in s.routes()] == ["A", "a", "b"]


def test_policy_any_case_and_elements_normalised() -> None:
    s = RouteStore()
    assert s.create("r", " MK ").policy == "mk"
    assert s.append("r", [" OpenAI : gpt-4o ", "openrouter:meta/llama:free"]).elements == [
        "openai:gpt-4o",
        "openrouter:meta/llama:free",
    ]


def test_returned_routes_are_copies() -> None:
    s = RouteStore()
    s.create("r", "m")
    s.append("r", ["openai:gpt-4o"])
    got = s.get("r")
    assert got is not None
    got.elements.append("anthropic:x")
    s.routes()[0].elements.clear()
    assert s.get("r") == Route("r", "m", ["openai:gpt-4o"])


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "a:b", "a/b", "with space", "ünï", "semi;colon", "tab\t"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="route name must be 1-64 characters"):
        RouteStore().create(name, "k")


@pytest.mark.parametrize("name", ["a", "A-b_c.9", "x" * 64, "gpt-4o.mini"])
def test_good_names(name: str) -> None:
    assert RouteStore().create(name, "k").name == name


def test_errors() -> None:
    s = RouteStore()
    s.create("r", "k")
    with pytest.raises(ValueError, match="policy must be one of k|m|km|mk, got 'x'"):
        s.create("q", "x")
    with pytest.raises(ValueError, match="'r' already exists"):
        s.create("r", "m")
    for change in (s.append, s.prepend):
        with pytest.raises(KeyError, match="no failover route 'q'"):
            change("q", ["openai:gpt-4o"])
    with pytest.raises(KeyError, match="no failover route 'R'"):
        s.clear("R")
    with pytest.raises(KeyError):
        s.delete("q")
    for bad in ("openai", "openai:", ":gpt-4o", "  "):
        with pytest.raises(ValueError, match="must be 'backend:model'"):
            s.append("r", ["openai:gpt-4o", bad])
    assert s.get("r") == Route("r", "k", [])  # a bad element changes nothing
    assert s.names() == ["r"]


# ------------------------------------------------------------------------------------------------
# Persistence
# ------------------------------------------------------------------------------------------------


def test_routes_survive_a_new_store_on_the_same_file(db: str) -> None:
    with RouteStore(db) as s:
        s.create("smart", "km")
        s.append("smart", ["openai:gpt-4o", "anthropic:claude-x"])
        s.create("gone", "k")
        s.create("empty", "mk")
        s.delete("gone")
        s.create("cleared", "m")
        s.append("cleared", ["openai:gpt-4o"])
        s.clear("cleared")
    with reopened(db) as again:
        assert again.names() == ["cleared", "empty", "smart"]
        assert again.get("smart") == Route("smart", "km", ["openai:gpt-4o", "anthropic:claude-x"])
        assert again.get("cleared") == Route("cleared", "m", [])
        assert again.get("empty") == Route("empty", "mk", [])


def test_flush_puts_changes_on_disk(store: RouteStore, db: str) -> None:
    store.create("r", "k")
    store.append("r", ["openai:gpt-4o"])
    assert store.flush(10)
    rows = sqlite3.connect(db).execute("SELECT name, policy, elements FROM failover_routes")
    assert rows.fetchall() == [("r", "k", '["openai:gpt-4o"]')]


def test_shares_the_file_with_the_usage_store(db: str) -> None:
    usage = UsageStore(db)
    try:
        with RouteStore(db) as routes:
            for i in range(20):
                usage.record(UsageRow(ts=float(i), front="openai", outcome="ok"))
                routes.create(f"r{i}", "m")
                routes.append(f"r{i}", ["openai:gpt-4o"])
            assert routes.flush(10) and usage.flush(10)
            assert usage.row_count() == 20
        assert len(stored_names(db)) == 20
    finally:
        usage.close()


def test_changes_never_wait_for_the_disk(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer is held inside its write: changes and reads go on; flush waits for it."""
    entered, release = threading.Event(), threading.Event()
    real_write = RouteStore._write

    def slow_write(con: sqlite3.Connection, writes: list[object]) -> None:
        entered.set()
        assert release.wait(30)
        real_write(con, writes)  # type: ignore[arg-type]

    monkeypatch.setattr(RouteStore, "_write", staticmethod(slow_write))
    s = RouteStore(db)
    try:
        s.create("r", "k")
        assert entered.wait(10)  # the writer is now stuck on the disk
        for i in range(50):
            s.append("r", [f"openai:m{i}"])
        s.create("q", "mk")
        route = s.get("r")
        assert route is not None and len(route.elements) == 50
        assert s.names() == ["q", "r"]
        assert s.flush(0.01) is False  # not on disk yet
        assert stored_names(db) == []
        release.set()
        assert s.flush(10) is True
    finally:
        release.set()
        s.close()
    with reopened(db) as again:
        assert again.names() == ["q", "r"]
        assert again.get("r") == Route("r", "k", [f"openai:m{i}" for i in range(50)])


def test_changes_from_many_threads_are_all_kept(db: str) -> None:
    with RouteStore(db) as s:
        s.create("r", "m")

        def add(t: int) -> None:
            for i in range(25):
                s.append("r", [f"openai:t{t}-{i}"])

        threads = [threading.Thread(target=add, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        route = s.get("r")
        assert route is not None and len(route.elements) == 100
    with reopened(db) as again:
        stored = again.get("r")
    assert stored is not None and sorted(stored.elements) == sorted(route.elements)


def test_memory_only_store_flushes_at_once() -> None:
    s = RouteStore()
    s.create("r", "k")
    assert s.flush(0) is True
    s.close()


def test_change_after_close_stays_in_memory(db: str) -> None:
    s = RouteStore(db)
    s.create("kept", "k")
    s.close()
    s.create("late", "k")
    assert s.names() == ["kept", "late"]
    assert stored_names(db) == ["kept"]


def test_bad_stored_rows_are_skipped(db: str) -> None:
    with RouteStore(db) as s:
        s.create("good", "k")
    con = sqlite3.connect(db)
    with con:
        con.executemany(
            "INSERT INTO failover_routes VALUES (?, ?, ?, 0)",
            [("bad-policy", "zz", "[]"), ("bad-json", "k", "{"), ("not-list", "k", '"x"')],
        )
    con.close()
    assert stored_names(db) == ["good"]


# ------------------------------------------------------------------------------------------------
# Routes from mitm.conf
# ------------------------------------------------------------------------------------------------


def test_load_config_shapes() -> None:
    s = RouteStore()
    s.load_config(
        {
            "smart": {"policy": "km", "elements": ["openai:gpt-4o", "anthropic:claude-x"]},
            "cheap": ["openai:gpt-4o-mini", "gemini:flash"],
            "bare": {"elements": ["openai:o3"]},
            "none": {"policy": "k"},
        }
    )
    assert s.get("smart") == Route("smart", "km", ["openai:gpt-4o", "anthropic:claude-x"])
    assert s.get("cheap") == Route("cheap", "m", ["openai:gpt-4o-mini", "gemini:flash"])
    assert s.get("bare") == Route("bare", "m", ["openai:o3"])
    assert s.get("none") == Route("none", "k", [])


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"bad name": ["openai:x"]}, "'bad name'"),
        ({"r": {"policy": "x"}}, "policy must be one of"),
        ({"r": {"policy": "k", "elemnts": []}}, "unknown key(s) elemnts"),
        ({"r": {"elements": "openai:x"}}, "elements must be a list"),
        ({"r": ["openai"]}, "must be 'backend:model'"),
        ({"r": [3]}, "must be a 'backend:model' string"),
        ({"r": "openai:x"}, "expected {policy"),
        ({5: ["openai:x"]}, "route name must be"),
    ],
)
def test_bad_config_names_the_route(config: dict[object, object], fragment: str) -> None:
    s = RouteStore()
    s.load_config({"first": ["openai:ok"]})
    with pytest.raises(ValueError) as caught:
        s.load_config({"fine": ["openai:x"], **config})  # type: ignore[dict-item]
    message = str(caught.value)
    assert message.startswith("failover route ") and "in the config" in message
    assert fragment in message
    assert s.names() == ["first"]  # nothing taken from a bad config


def test_config_that_is_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="must be a mapping"):
        RouteStore().load_config(["openai:x"])  # type: ignore[arg-type]
    s = RouteStore()
    s.load_config(None)
    assert s.names() == []


def test_config_routes_are_not_stored(db: str) -> None:
    with RouteStore(db) as s:
        s.load_config({"conf": ["openai:gpt-4o"]})
        assert s.names() == ["conf"]
    assert stored_names(db) == []


def test_stored_routes_win_over_the_config_across_a_restart(db: str) -> None:
    config = {
        "changed": {"policy": "km", "elements": ["openai:a"]},
        "untouched": {"policy": "k", "elements": ["openai:b"]},
        "deleted": ["openai:c"],
    }
    with RouteStore(db) as s:
        s.load_config(config)
        s.append("changed", ["anthropic:x"])
        s.delete("deleted")
        assert s.names() == ["changed", "untouched"]
    with reopened(db) as again:
        again.load_config(config)
        assert again.get("changed") == Route("changed", "km", ["openai:a", "anthropic:x"])
        assert again.get("untouched") == Route("untouched", "k", ["openai:b"])
        # the config still names it: a deleted config route comes back at the next start
        assert again.get("deleted") == Route("deleted", "m", ["openai:c"])


def test_a_route_created_by_command_beats_the_config(db: str) -> None:
    with RouteStore(db) as s:
        s.create("r", "mk")
        s.append("r", ["gemini:g"])
    with reopened(db) as again:
        again.load_config({"r": {"policy": "k", "elements": ["openai:gpt-4o"]}})
        assert again.get("r") == Route("r", "mk", ["gemini:g"])


def test_reloading_the_config_replaces_its_routes() -> None:
    s = RouteStore()
    s.load_config({"old": ["openai:a"], "kept": ["openai:b"], "edited": ["openai:c"]})
    s.append("edited", ["openai:d"])
    s.load_config({"kept": ["openai:b2"], "new": {"policy": "k", "elements": ["openai:e"]}})
    assert s.names() == ["edited", "kept", "new"]
    assert s.get("kept") == Route("kept", "m", ["openai:b2"])
    assert s.get("edited") == Route("edited", "m", ["openai:c", "openai:d"])
    s.load_config({})
    assert s.names() == ["edited"]
