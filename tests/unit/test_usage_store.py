"""The usage store: writer, queries (checked against a plain-Python oracle), metrics, kill -9."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from protocol import usage_store
from protocol.canonical import ChatRequest, Usage
from protocol.exchange import Attempt, Exchange, Front, RoutePlan
from protocol.usage_store import (
    BATCH_ROWS_PER_STATEMENT,
    RECENT_MAX,
    SCHEMA_VERSION,
    TABLE_SQL,
    UsageFilters,
    UsageRow,
    UsageStore,
    parse_time,
    row_from_exchange,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0
T0 = 1_750_000_000.0 + 1234.5  # not aligned to an hour or a day


@pytest.fixture
def store(tmp_path: Path) -> Iterator[UsageStore]:
    s = UsageStore(str(tmp_path / "usage.db"))
    yield s
    s.close()


def row(**kw: Any) -> UsageRow:
    base: dict[str, Any] = {"ts": T0, "front": "openai", "outcome": "ok"}
    base.update(kw)
    return UsageRow(**base)


# ----------------------------------------------------------------------------------------------
# The writer
# ----------------------------------------------------------------------------------------------


def test_record_never_blocks_and_the_writer_batches(
    store: UsageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    sizes: list[int] = []
    commit = UsageStore._commit

    def slow_commit(con: sqlite3.Connection, values: list[tuple[Any, ...]]) -> None:
        release.wait(10)
        sizes.append(len(values))
        commit(con, values)

    monkeypatch.setattr(UsageStore, "_commit", staticmethod(slow_commit))
    started = time.perf_counter()
    for i in range(2500):
        store.record(row(session_id=f"s{i}"))
    assert time.perf_counter() - started < 1.0  # the writer is stuck, record() is not
    assert not store.flush(timeout=0.05)  # not committed yet
    release.set()
    assert store.flush(timeout=10)
    assert sum(sizes) == 2500 and store.written == 2500
    assert max(sizes) <= UsageStore.BATCH_MAX and len(sizes) <= 4  # batches, not row by row
    assert store.row_count() == 2500


def test_flush_waits_only_for_rows_before_it(store: UsageStore) -> None:
    assert store.flush(timeout=5)  # nothing queued
    store.record(row())
    assert store.flush(timeout=5)
    assert store.row_count() == 1


def test_a_flush_does_not_wait_for_rows_to_gather(
    store: UsageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BATCH_WAIT", 600.0)
    monkeypatch.setattr(store, "QUIET_WAIT", 600.0)
    store.record(row(session_id="first"))
    assert store.flush(timeout=10)
    assert store.row_count() == 1


def test_a_batch_larger_than_one_statement_is_stored_whole(store: UsageStore) -> None:
    count = 2 * BATCH_ROWS_PER_STATEMENT + 3
    for i in range(count):
        store.record(row(ts=T0 + i, session_id=f"s{i}", latency_ms=float(i)))
    store.record(row(session_id="bad", outcome=None))  # refused: only it is lost
    assert store.flush()
    with sqlite3.connect(store.path) as con:
        got = [r[0] for r in con.execute("SELECT session_id FROM usage ORDER BY ts")]
    assert got == [f"s{i}" for i in range(count)] and store.failed == 1


def test_record_from_many_threads_while_reading(store: UsageStore) -> None:
    errors: list[BaseException] = []

    def write(t: int) -> None:
        for i in range(300):
            store.record(row(session_id=f"t{t}-{i}", backend="openai", latency_ms=float(i)))

    def read() -> None:
        try:
            for _ in range(20):
                store.stats(group_by="backend")
                store.recent(limit=10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.flush(timeout=10)
    with sqlite3.connect(store.path) as con:
        ids = {r[0] for r in con.execute("SELECT session_id FROM usage")}
    assert ids == {f"t{t}-{i}" for t in range(8) for i in range(300)}


def test_queries_from_executor_threads(store: UsageStore) -> None:
    for i in range(50):
        store.record(row(ts=T0 + i, latency_ms=float(i)))
    assert store.flush()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: store.stats()["totals"]["requests"], range(16)))
    assert results == [50] * 16


def test_a_bad_row_does_not_lose_its_batch(store: UsageStore) -> None:
    store.record(row(session_id="good-1"))
    store.record(row(session_id="bad", outcome=None))  # violates NOT NULL
    store.record(row(session_id="good-2"))
    assert store.flush()
    assert store.row_count() == 2 and store.failed == 1


def test_a_batch_stores_each_value_as_a_single_row_would(tmp_path: Path) -> None:
    """Rows written in one batch (one multi-row statement) and one by one read back the same:
    integers, floats, text with any characters, NULLs, booleans."""
    rows = [
        row(
            ts=T0 + i,
            session_id=f"s-{i}",
            project="projet é 日本",
            backend="openai",
            model_requested="openai:gpt-4o",
            model_used="gpt-4o",
            key_id="openai#1",
            attempts='[{"backend":"openai","failure":"503 \\"busy\\""}]',
            status=200 if i % 2 else None,
            error=None if i % 2 else 'quote " and \\ and \n newline',
            input_tokens=2**40 + i,
            output_tokens=i,
            cost_usd=0.1 + 1e-9 * i,
            latency_ms=1.5 * i,
            stream=bool(i % 2),
            redactions=i,
        )
        for i in range(7)
    ]
    batched = UsageStore(str(tmp_path / "batched.db"))
    single = UsageStore(str(tmp_path / "single.db"))
    try:
        for r in rows:
            batched.record(r)
        assert batched.flush()
        for r in rows:
            single.record(r)
            assert single.flush()  # each row its own batch
        query = "SELECT * FROM usage ORDER BY ts"
        with sqlite3.connect(batched.path) as a, sqlite3.connect(single.path) as b:
            got, want = a.execute(query).fetchall(), b.execute(query).fetchall()
        assert got == want and len(got) == 7
        assert [type(v) for v in got[0]] == [type(v) for v in want[0]]
    finally:
        batched.close()
        single.close()


def test_record_after_close_is_dropped(tmp_path: Path) -> None:
    s = UsageStore(str(tmp_path / "u.db"))
    s.record(row())
    s.close()
    s.record(row())  # logged and dropped, no exception
    assert UsageStore(str(tmp_path / "u.db")).row_count() == 1


def test_content_is_kept_only_when_asked(tmp_path: Path) -> None:
    for store_content, expected in ((False, None), (True, "the prompt")):
        with UsageStore(str(tmp_path / f"c{store_content}.db"), store_content=store_content) as s:
            s.record(row(content="the prompt"))
            assert s.flush()
            assert s.recent()[0]["content"] == expected


def test_file_settings_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "u.db")
    with UsageStore(path) as s:
        s.record(row())
        assert s.flush()
    with UsageStore(path) as s:  # the schema is created once, rows stay
        assert s.row_count() == 1
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_usage_ts", "ix_usage_project_ts", "ix_usage_session_ts"} <= indexes
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="newer"):
        UsageStore(path)


KILL_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from protocol.usage_store import UsageRow, UsageStore
store = UsageStore(sys.argv[1])
i = int(sys.argv[3])
while True:
    for _ in range(150):
        store.record(UsageRow(ts=time.time(), front="openai", outcome="ok", session_id=f"s{i}",
                              backend="openai", model_used="gpt-4o", latency_ms=float(i),
                              attempts='[{"backend":"openai","model":"gpt-4o"}]'))
        i += 1
    if store.flush(30):
        print(i, flush=True)
"""


def test_kill_9_mid_write_keeps_every_committed_row(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.db")
    confirmed = 0
    for _ in range(3):  # kill, reopen and go on writing, three times
        child = subprocess.Popen(
            [sys.executable, "-c", KILL_CHILD, path, str(ROOT), str(confirmed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        target, deadline = confirmed + 1500, time.monotonic() + 20
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            confirmed = int(line)
            if confirmed >= target:
                break
        os.kill(child.pid, signal.SIGKILL)  # the writer is busy with the next batches
        child.wait(10)
        child.stdout.close()
        assert confirmed >= target
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        seq = [int(r[0][1:]) for r in con.execute("SELECT session_id FROM usage")]
        assert set(range(confirmed)) <= set(seq)  # every acknowledged row is there
        assert len(seq) == len(set(seq))
        total = con.execute("SELECT count(*) FROM usage").fetchone()[0]
        for table in ("usage_hourly", "usage_daily"):  # the rollups moved with the rows
            assert con.execute(f"SELECT sum(requests) FROM {table}").fetchone()[0] == total
        con.close()
        confirmed = max(seq) + 1
    with UsageStore(path) as s:
        assert s.stats()["totals"]["requests"] == len(seq)


# ----------------------------------------------------------------------------------------------
# Queries, against a plain-Python oracle
# ----------------------------------------------------------------------------------------------


def sample_rows(n: int = 1500, seed: int = 3) -> list[UsageRow]:
    rnd = random.Random(seed)
    models = {"openai": ["gpt-4o", "gpt-4o-mini"], "anthropic": ["claude-x"], "gemini": ["g-2"]}
    rows = []
    for _ in range(n):
        ts = T0 + rnd.random() * 3.3 * DAY
        kind = rnd.random()
        backend = rnd.choice(list(models))
        used = rnd.choice(models[backend])
        requested = used if rnd.random() < 0.85 else rnd.choice(["gpt-4o", "alias", "claude-x"])
        if kind < 0.06:  # answered locally: no backend, no model used
            r = row(ts=ts, outcome="local", model_requested=requested, latency_ms=rnd.random())
        elif kind < 0.1:  # failed before any backend: nothing but the time
            r = row(ts=ts, outcome="error", error="no route")
        else:
            latency = round(rnd.lognormvariate(7, 1), 3) if rnd.random() < 0.95 else None
            r = row(
                ts=ts,
                outcome="error" if rnd.random() < 0.1 else "ok",
                backend=backend,
                model_requested=requested,
                model_used=used,
                key_id=f"{backend.upper()}_API_KEY_{rnd.randint(1, 2)}",
                input_tokens=rnd.randint(1, 5000) if rnd.random() < 0.9 else None,
                output_tokens=rnd.randint(1, 900),
                reasoning_tokens=rnd.randint(0, 50),
                cached_tokens=rnd.randint(0, 100),
                cost_usd=rnd.random() / 100 if backend != "gemini" else None,
                latency_ms=latency,
                ttft_ms=round(latency / 3, 3) if latency and rnd.random() < 0.7 else None,
            )
        rows.append(
            replace(
                r,
                session_id=f"s{rnd.randint(0, 40)}",
                project=rnd.choice(["web", "api", None]),
            )
        )
    return rows


def nearest_rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]


def selects(f: UsageFilters, r: UsageRow) -> bool:
    return (
        (f.project is None or r.project == f.project)
        and (f.session is None or r.session_id == f.session)
        and (f.backend is None or r.backend == f.backend)
        and (f.model is None or f.model in (r.model_used, r.model_requested))
        and (f.since is None or r.ts >= f.since)
        and (f.until is None or r.ts < f.until)
    )


def group_of(group: str, r: UsageRow) -> str | None:
    if group == "day":
        return datetime.fromtimestamp(r.ts, UTC).date().isoformat()
    if group == "model":
        return r.model_used or r.model_requested
    return {"backend": r.backend, "project": r.project, "key": r.key_id}[group]


def summary(rows: list[UsageRow]) -> dict[str, Any]:
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    out: dict[str, Any] = {
        "requests": len(rows),
        "errors": sum(r.outcome == "error" for r in rows),
        "input_tokens": sum(r.input_tokens or 0 for r in rows),
        "output_tokens": sum(r.output_tokens or 0 for r in rows),
        "reasoning_tokens": sum(r.reasoning_tokens or 0 for r in rows),
        "cached_tokens": sum(r.cached_tokens or 0 for r in rows),
        "cost_usd": pytest.approx(sum(costs)) if costs else None,
        "priced_requests": len(costs),
    }
    for metric in ("latency_ms", "ttft_ms"):
        values = [getattr(r, metric) for r in rows if getattr(r, metric) is not None]
        for p in (50, 95):
            out[f"{metric}_p{p}"] = nearest_rank(values, p)
    return out


def oracle(rows: list[UsageRow], f: UsageFilters, group: str | None) -> dict[str, Any]:
    chosen = [r for r in rows if selects(f, r)]
    groups: dict[str | None, list[UsageRow]] = {}
    if group:
        for r in chosen:
            groups.setdefault(group_of(group, r), []).append(r)
    return {
        "totals": summary(chosen),
        "groups": {key: summary(members) for key, members in groups.items()},
    }


FILTERS = [
    UsageFilters(),
    UsageFilters(backend="openai"),
    UsageFilters(project="web"),
    UsageFilters(model="gpt-4o"),
    UsageFilters(model="claude-x"),
    UsageFilters(model="alias"),
    UsageFilters(session="s3"),
    UsageFilters(since=T0 + 1.3 * DAY + 123.4),
    UsageFilters(until=T0 + 2.2 * DAY + 17),
    UsageFilters(since=T0 + 1800.5, until=T0 + 3000),  # inside one hour
    UsageFilters(since=T0 + 10 * 3600 + 7, until=T0 + 60 * 3600 + 11),  # raw, hours and days
    UsageFilters(since=T0 + 2 * DAY, until=T0 + 2 * DAY + 5 * 3600),  # raw and hours
    UsageFilters(backend="openai", model="gpt-4o"),
    UsageFilters(backend="anthropic", project="web", since=T0 + DAY),
    UsageFilters(project="api", model="gpt-4o", until=T0 + 3 * DAY),
    UsageFilters(project="nobody"),
]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UsageStore, list[UsageRow]]]:
    rows = sample_rows()
    s = UsageStore(str(tmp_path_factory.mktemp("q") / "usage.db"))
    for r in rows:
        s.record(r)
    assert s.flush()
    yield s, rows
    s.close()


# the histograms' bucket middles: within 1.1% of every value of their bucket (printed to six
# significant digits)
HIST_TOLERANCE = 2 ** (1 / (2 * usage_store.BUCKETS_PER_DOUBLING)) - 1 + 1e-5


def within_a_bucket(summary: dict[str, Any]) -> dict[str, Any]:
    """The oracle's summary with its percentiles as close as a histogram reads them."""
    return {
        k: pytest.approx(v, rel=HIST_TOLERANCE) if "_p" in k and v is not None else v
        for k, v in summary.items()
    }


@pytest.mark.parametrize("exact_rows", [20_000, 0], ids=["sorted", "histograms"])
@pytest.mark.parametrize("group", [None, "backend", "model", "project", "key", "day"])
def test_stats_match_the_oracle(
    filled: tuple[UsageStore, list[UsageRow]],
    group: str | None,
    exact_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small sets (here: every set) are sorted, exact; read off the histograms (no set counts
    as small), each percentile is within a bucket of the exact one."""
    store, rows = filled
    monkeypatch.setattr(usage_store._Reader, "EXACT_ROWS", exact_rows)
    close = within_a_bucket if exact_rows == 0 else (lambda summary: summary)
    for f in FILTERS:
        got = store.stats(f, group_by=group)
        want = oracle(rows, f, group)
        assert got["totals"] == close(want["totals"]), f
        assert {g["key"]: {k: v for k, v in g.items() if k != "key"} for g in got["groups"]} == {
            key: close(summary) for key, summary in want["groups"].items()
        }, f
        assert got["group_by"] == group and got["filters"] == f.as_json()


def test_rollups_and_histograms_follow_deletes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = sample_rows(300, seed=5)
    with UsageStore(str(tmp_path / "d.db")) as s:
        for r in rows:
            s.record(r)
        assert s.flush()
        with sqlite3.connect(s.path) as con:
            con.execute("DELETE FROM usage WHERE backend = 'openai'")
        kept = [r for r in rows if r.backend != "openai"]
        want = oracle(kept, UsageFilters(), "model")
        assert s.stats(group_by="model")["totals"] == want["totals"]
        monkeypatch.setattr(usage_store._Reader, "EXACT_ROWS", 0)
        got = s.stats(group_by="model")
        assert got["totals"] == within_a_bucket(want["totals"])
        assert {g["key"]: g["latency_ms_p95"] for g in got["groups"]} == {
            k: within_a_bucket(v)["latency_ms_p95"] for k, v in want["groups"].items()
        }


def test_stats_shape_and_group_order(filled: tuple[UsageStore, list[UsageRow]]) -> None:
    store, _ = filled
    by_day = store.stats(group_by="day")["groups"]
    assert [g["key"] for g in by_day] == sorted(g["key"] for g in by_day)
    by_backend = store.stats(group_by="backend")["groups"]
    assert [g["requests"] for g in by_backend] == sorted(
        (g["requests"] for g in by_backend), reverse=True
    )
    result = store.stats({"backend": "openai", "since": "2025-06-16"})
    assert result["filters"]["since"] == "2025-06-16T00:00:00.000Z"
    assert set(result) == {"filters", "group_by", "totals", "groups"}
    json.dumps(result)  # plain JSON
    empty = store.stats(UsageFilters(project="nobody"))["totals"]
    assert empty["requests"] == 0 and empty["cost_usd"] is None
    assert empty["latency_ms_p50"] is None


def test_group_by_must_be_known(store: UsageStore) -> None:
    with pytest.raises(ValueError, match="group_by must be one of backend, model"):
        store.stats(group_by="session")


@pytest.mark.parametrize("exact_rows", [20_000, 0], ids=["sorted", "histograms"])
def test_percentiles_on_known_values(
    store: UsageStore, exact_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_store._Reader, "EXACT_ROWS", exact_rows)
    for i in range(1, 101):  # 1..100 for openai, 1..10 for gemini, shuffled in time
        store.record(row(ts=T0 + (i * 37) % 101, backend="openai", latency_ms=float(i)))
    for i in range(1, 11):
        store.record(row(ts=T0 + i, backend="gemini", latency_ms=float(i), ttft_ms=float(i)))
    store.record(row(ts=T0, backend="gemini", latency_ms=None))
    assert store.flush()
    groups = {g["key"]: g for g in store.stats(group_by="backend")["groups"]}

    def near(*values: float) -> Any:
        rel = HIST_TOLERANCE if exact_rows == 0 else 0
        return tuple(pytest.approx(v, rel=rel) for v in values)

    assert (groups["openai"]["latency_ms_p50"], groups["openai"]["latency_ms_p95"]) == near(50, 95)
    assert (groups["gemini"]["latency_ms_p50"], groups["gemini"]["latency_ms_p95"]) == near(5, 10)
    assert (groups["gemini"]["ttft_ms_p50"], groups["gemini"]["ttft_ms_p95"]) == near(5, 10)
    assert groups["openai"]["ttft_ms_p50"] is None
    one = store.stats(UsageFilters(backend="openai", since=T0 + 100, until=T0 + 101))["totals"]
    assert one["requests"] == 1 and one["latency_ms_p50"] == one["latency_ms_p95"]


def test_recent_newest_first_with_limit_and_filters(store: UsageStore) -> None:
    for i in range(RECENT_MAX + 200):
        store.record(row(ts=T0 + i, session_id=f"s{i % 3}", attempts='[{"backend":"openai"}]'))
    assert store.flush()
    rows = store.recent(limit=5000)
    assert len(rows) == RECENT_MAX
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    assert len(store.recent()) == 50
    only = store.recent({"session": "s1", "since": "2025-01-01"}, limit=3)
    assert [r["session_id"] for r in only] == ["s1"] * 3
    first = only[0]
    assert first["attempts"] == [{"backend": "openai"}] and first["stream"] is False
    assert first["time"].endswith("Z") and set(first) >= {"id", "key_id", "token_source"}
    with pytest.raises(ValueError, match="limit"):
        store.recent(limit=0)


# ----------------------------------------------------------------------------------------------
# Time parsing
# ----------------------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - 86400),
        ("15m", NOW - 900),
        ("7d", NOW - 7 * 86400),
        ("90s", NOW - 90),
        ("2w", NOW - 14 * 86400),
        ("1.5h", NOW - 5400),
        (" 24H ", NOW - 86400),
        ("now", NOW),
        ("2025-01-31T12:00:00Z", 1738324800.0),
        ("2025-01-31T14:00:00+02:00", 1738324800.0),
        ("2025-01-31T12:00:00", 1738324800.0),  # naive is UTC
        ("2025-01-31", 1738281600.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty time"),
        ("24", "has no unit"),
        ("24x", "unreadable time"),
        ("-5h", "unreadable time"),
        ("yesterday", "unreadable time"),
        ("2025-13-01", "unreadable time"),
        ("99999999999999d", "out of range"),
    ],
)
def test_parse_time_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time(text, NOW)


def test_filters_from_query() -> None:
    f = UsageFilters.from_query({"project": " web ", "since": "1h", "model": "", "x": "y"}, NOW)
    assert f == UsageFilters(project="web", since=NOW - 3600)
    with pytest.raises(ValueError, match="unreadable"):
        UsageFilters.from_query({"until": "soon"}, NOW)


# ----------------------------------------------------------------------------------------------
# Prometheus metrics
# ----------------------------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_metrics(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    types: dict[str, str] = {}
    samples = []
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4
        else:
            m = SAMPLE.match(line)
            assert m, line
            raw = LABEL.findall(m[2] or "")
            assert ",".join(f'{k}="{v}"' for k, v in raw) == (m[2] or "")  # nothing left over
            labels = {
                k: re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], v) for k, v in raw
            }
            samples.append((m[1], labels, float(m[3])))
    return types, samples


def test_metrics_text_format(store: UsageStore) -> None:
    odd = 'we"ird\\model\nx'
    store.record(
        row(
            backend="openai",
            model_used="gpt-4o",
            input_tokens=10,
            output_tokens=5,
            latency_ms=300.0,
        )
    )
    store.record(row(backend="openai", model_used="gpt-4o", outcome="error", latency_ms=70000.0))
    store.record(row(backend="gemini", model_used=odd, input_tokens=1, latency_ms=2000.0))
    store.record(row(outcome="local", model_requested="gpt-4o", latency_ms=1.0))
    types, samples = parse_metrics(store.metrics_text())
    assert types == {
        "llm_proxy_requests_total": "counter",
        "llm_proxy_tokens_total": "counter",
        "llm_proxy_errors_total": "counter",
        "llm_proxy_request_latency_seconds": "histogram",
    }

    def value(name: str, **labels: str) -> float:
        found = [v for n, ls, v in samples if n == name and ls == labels]
        assert len(found) == 1, (name, labels)
        return found[0]

    assert value("llm_proxy_requests_total", backend="openai", model="gpt-4o", outcome="ok") == 1
    assert value("llm_proxy_requests_total", backend="none", model="gpt-4o", outcome="local") == 1
    assert value("llm_proxy_tokens_total", backend="openai", model="gpt-4o", direction="in") == 10
    assert value("llm_proxy_tokens_total", backend="openai", model="gpt-4o", direction="out") == 5
    assert value("llm_proxy_errors_total", backend="openai", model="gpt-4o") == 1
    assert value("llm_proxy_tokens_total", backend="gemini", model=odd, direction="in") == 1
    name = "llm_proxy_request_latency_seconds"
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for n, ls, v in samples:
        if n == f"{name}_bucket":
            series.setdefault((ls["backend"], ls["model"]), []).append((float(ls["le"]), v))
    assert set(series) == {("openai", "gpt-4o"), ("gemini", odd), ("none", "gpt-4o")}
    for (backend, model), buckets in series.items():
        bounds = [b for b, _ in buckets]
        assert bounds == [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, math.inf]
        counts = [c for _, c in buckets]
        assert counts == sorted(counts)  # cumulative
        assert counts[-1] == value(f"{name}_count", backend=backend, model=model)
    assert [c for _, c in series[("openai", "gpt-4o")]] == [0, 0, 1, 1, 1, 1, 1, 1, 1, 2]
    assert value(f"{name}_sum", backend="openai", model="gpt-4o") == pytest.approx(70.3)


# ----------------------------------------------------------------------------------------------
# The row of an exchange
# ----------------------------------------------------------------------------------------------


def test_row_from_exchange() -> None:
    ex = Exchange(
        front=Front(protocol="anthropic", arrival="intercept", session_id="s1", client_stream=True),
        request=ChatRequest(source="anthropic", model="fast"),
        raw={},
        requested_model="fast",
        project="web",
        route=RoutePlan(
            attempts=[
                Attempt("anthropic", "claude-haiku-4-5", "ANTHROPIC_API_KEY", "429 rate limited"),
                Attempt("anthropic", "claude-haiku-4-5-20251001", "ANTHROPIC_API_KEY_2"),
            ],
            current=1,
        ),
        usage=Usage(input_tokens=1000, output_tokens=200, cached_tokens=400),
        usage_source="upstream",
        outcome="ok",
        status=200,
        started=100.0,
        first_byte=100.25,
        finished=101.5,
    )
    r = row_from_exchange(ex, ts=T0)
    assert (r.backend, r.model_used, r.key_id) == (
        "anthropic",
        "claude-haiku-4-5-20251001",
        "ANTHROPIC_API_KEY_2",
    )
    assert (r.front, r.arrival, r.session_id, r.project, r.stream) == (
        "anthropic",
        "intercept",
        "s1",
        "web",
        True,
    )
    assert json.loads(r.attempts)[0] == {
        "backend": "anthropic",
        "model": "claude-haiku-4-5",
        "key_id": "ANTHROPIC_API_KEY",
        "failure": "429 rate limited",
    }
    assert (r.latency_ms, r.ttft_ms) == (1500.0, 250.0)
    assert (r.input_tokens, r.cached_tokens, r.token_source) == (1000, 400, "upstream")
    assert r.cost_usd == pytest.approx((600 * 1.0 + 400 * 0.1 + 200 * 5.0) / 1e6)
    # still pending at the end: an error; an unknown model: no cost
    ex.outcome, ex.finished, ex.first_byte = "pending", None, None
    ex.route.attempts[1].model = "mystery-model"
    ex.error = "client went away\n  mid-stream"
    r = row_from_exchange(ex, now=100.5, ts=T0)
    assert (r.outcome, r.error, r.latency_ms, r.ttft_ms) == (
        "error",
        "client went away mid-stream",
        500.0,
        None,
    )
    assert r.cost_usd is None


def test_histograms_serve_the_common_queries(
    filled: tuple[UsageStore, list[UsageRow]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over many rows, percentiles of one filter, one group, a time range, and a backend with
    its models or keys come from the histograms, not from sorting rows (other pairs sort the
    filtered rows)."""
    store, _ = filled
    monkeypatch.setattr(usage_store._Reader, "EXACT_ROWS", 0)

    def no_window(*args: object) -> None:
        raise AssertionError("sorted rows instead of reading a histogram")

    monkeypatch.setattr(usage_store._Reader, "_window", no_window)
    for f in (UsageFilters(), UsageFilters(since=T0 + DAY), UsageFilters(until=T0 + DAY)):
        for group in (None, "backend", "model", "project", "key", "day"):
            store.stats(f, group_by=group)
    for group in (None, "backend", "model", "key"):  # keys imply their backend
        store.stats(UsageFilters(backend="openai"), group_by=group)
    store.stats(UsageFilters(project="web"))
    store.stats(UsageFilters(project="web", since=T0 + DAY), group_by="project")
    for f in (UsageFilters(backend="openai"), UsageFilters(project="web", until=T0 + 2 * DAY)):
        store.stats(f, group_by="day")  # every histogram counts per day
    store.stats(UsageFilters(project="web", since=T0 + DAY), group_by="model")


def test_a_version_1_file_gains_the_redactions_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    old_table = TABLE_SQL.replace("  redactions INTEGER NOT NULL DEFAULT 0,\n", "")
    con.execute(old_table)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.commit()
    con.close()
    with UsageStore(str(path)) as s:
        s.record(row(redactions=3))
        assert s.flush()
        assert s.row_count() == 1
    con = sqlite3.connect(path)
    assert con.execute("SELECT redactions FROM usage").fetchall() == [(3,)]
    assert max(v for (v,) in con.execute("SELECT version FROM schema_version")) == SCHEMA_VERSION


def test_a_version_2_file_trades_its_metric_indexes_for_histograms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Schema 2 kept 14 indexes ordered by the metrics; opening such a file drops them, gives
    its rows their buckets and counts them into the histograms."""
    path = tmp_path / "v2.db"
    rows = sample_rows(400, seed=9)
    con = sqlite3.connect(path)
    con.execute(TABLE_SQL.replace("  latency_ms_bucket INTEGER,\n  ttft_ms_bucket INTEGER,\n", ""))
    columns = usage_store.ROW_COLUMNS
    con.executemany(
        f"INSERT INTO usage ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [usage_store.row_values(r)[: len(columns)] for r in rows],
    )
    con.execute("CREATE INDEX ix_usage_backend_latency_ms ON usage (backend, latency_ms, ts)")
    con.execute("CREATE INDEX ix_usage_ttft_ms ON usage (ttft_ms, ts)")
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (2)")
    con.commit()
    con.close()
    with UsageStore(str(path)) as s:
        assert "giving 400 rows their percentile histograms" in caplog.text  # startup waits
        monkeypatch.setattr(usage_store._Reader, "EXACT_ROWS", 0)
        got = s.stats(group_by="backend")
        want = oracle(rows, UsageFilters(), "backend")
        assert got["totals"] == within_a_bucket(want["totals"])
        assert {g["key"]: g["ttft_ms_p50"] for g in got["groups"]} == {
            k: within_a_bucket(v)["ttft_ms_p50"] for k, v in want["groups"].items()
        }
    con = sqlite3.connect(path)
    indexes = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not indexes & {"ix_usage_backend_latency_ms", "ix_usage_ttft_ms"}
    assert "ix_usage_ts" in indexes
    buckets = con.execute("SELECT latency_ms, latency_ms_bucket FROM usage").fetchall()
    assert all((b is None) == (v is None) for v, b in buckets)
    assert max(v for (v,) in con.execute("SELECT version FROM schema_version")) == SCHEMA_VERSION


def test_metric_buckets_read_back_within_their_width() -> None:
    for value in (0.001, 0.37, 1.0, 2.0, 412.5, 99_999.0):
        bucket = usage_store.metric_bucket(value)
        assert bucket is not None
        assert usage_store.bucket_value(bucket) == pytest.approx(value, rel=HIST_TOLERANCE)
    assert usage_store.metric_bucket(None) is None
    assert usage_store.bucket_value(usage_store.metric_bucket(0.0) or 0) == 0.0
