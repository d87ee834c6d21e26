"""The usage store: one sqlite row per LLM exchange, the `/usage` queries and `/metrics` counters.

What this module owns (nothing here knows mitmproxy):
- `UsageRow`, the row written for every exchange whatever its outcome, and `row_from_exchange`,
  which builds it from an `Exchange` (tokens, timings, attempts, cost).
- `UsageStore`: the sqlite file (WAL mode, `synchronous=NORMAL`, schema version table) and a
  background writer thread. `record(row)` only enqueues (it never blocks the event loop); the
  writer inserts what is queued in batches, one transaction per batch; `flush(timeout)` waits
  until everything recorded before it is committed; `close()` flushes and stops the thread. A
  kill -9 at any moment leaves the file consistent with every committed batch in it (WAL).
- The queries behind `GET /usage/stats` (`stats`) and `GET /usage/recent` (`recent`), safe to
  call from any thread (each thread reads through its own connection, inside one read
  transaction per call, so a call sees one snapshot); `parse_time` for `since`/`until`.
- `metrics_text()`: Prometheus counters and a latency histogram kept in memory by `record()`
  (counted since the process started, as Prometheus expects; a scrape runs no SQL).

How `stats` stays fast on millions of rows:
- Sums come from `usage_hourly`, a rollup kept by sqlite triggers in the same transaction as
  the row (so it can never disagree with `usage`): one row per hour, backend, model used, model
  requested, project and key. Only the partial hours at the edges of `since`/`until` are summed
  from raw rows; a `session` filter (not in the rollup) sums raw rows through its index.
- Percentiles are exact (nearest rank: the value at rank ceil(p/100 * n) of the n non-null
  values, ascending). For big sets they are read by walking an index ordered by the metric
  (`ORDER BY latency_ms LIMIT 1 OFFSET k`, from whichever end is nearer) - one index per group
  key - and for small or multi-filtered sets by one window-function query over the filtered
  rows; the cheaper of the two is chosen from the counts the rollup gives.

Times: `ts` is unix seconds (UTC). `since` is inclusive, `until` exclusive. Days are UTC days.

JSON shapes
-----------
`stats(filters, group_by)` -> the body of `GET /usage/stats`::

    {
      "filters": {"project": str|null, "session": str|null, "backend": str|null,
                  "model": str|null, "since": ISO-8601 UTC str|null, "until": ISO str|null},
      "group_by": null | "backend" | "model" | "project" | "key" | "day",
      "totals": Summary,
      "groups": [{"key": str|null, ...Summary}, ...]   # [] when group_by is null
    }

    Summary = {
      "requests": int,            # rows (every exchange, whatever its outcome)
      "errors": int,              # rows whose outcome is "error"
      "input_tokens": int, "output_tokens": int,       # input includes cached,
      "reasoning_tokens": int, "cached_tokens": int,   # output includes reasoning
      "cost_usd": float|null,     # sum over rows with a known price; null when none had one
      "priced_requests": int,     # how many rows the cost covers
      "latency_ms_p50": float|null, "latency_ms_p95": float|null,
      "ttft_ms_p50": float|null, "ttft_ms_p95": float|null
    }

Groups are ordered by requests (most first), days by date (oldest first). Group keys: the
backend name; the model used (the model requested when none was used); the project; the key
id (`GEMINI_API_KEY_2`); the UTC date `YYYY-MM-DD`. A null key gathers rows without that value.

`recent(filters, limit)` -> newest rows first, at most 1000; `GET /usage/recent` answers
`{"filters": {...as above...}, "limit": int, "rows": recent(...)}`, each row::

    {"id": int, "ts": float, "time": ISO-8601 UTC str, "session_id", "project", "front",
     "arrival", "backend", "model_requested", "model_used", "key_id",
     "attempts": [{"backend", "model", "key_id", "failure"}, ...], "status": int|null,
     "outcome", "error", "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens",
     "token_source", "cost_usd", "latency_ms", "ttft_ms", "stream": bool, "content": str|null}

Filters (query parameters of both endpoints): `project`, `session`, `backend`, `model` (matches
the model used or the model requested), `since`, `until` (ISO 8601, naive means UTC, or
relative to now: `90s`, `15m`, `24h`, `7d`, `2w`; `now`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from protocol import prices as price_table

if TYPE_CHECKING:
    from protocol.exchange import Exchange

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RECENT_MAX = 1000
GROUP_KEYS = ("backend", "model", "project", "key", "day")
GroupBy = Literal["backend", "model", "project", "key", "day"]
Metric = Literal["latency_ms", "ttft_ms"]
METRICS: tuple[Metric, ...] = ("latency_ms", "ttft_ms")
PERCENTILES = (50, 95)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ERROR_MAX_CHARS = 500

# ----------------------------------------------------------------------------------------------
# The row
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class UsageRow:
    """One exchange. `key_id` is the name of the key's variable, never the key itself."""

    ts: float  # unix seconds, UTC, when the exchange finished
    front: str  # openai | anthropic | gemini
    outcome: str  # ok | error | loop_halted | local
    arrival: str = "gateway"  # gateway | intercept
    session_id: str | None = None
    project: str | None = None
    backend: str | None = None
    model_requested: str | None = None
    model_used: str | None = None
    key_id: str | None = None
    attempts: str = "[]"  # JSON: [{"backend", "model", "key_id", "failure"}, ...]
    status: int | None = None
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    token_source: str = "none"  # upstream | counted | none
    cost_usd: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    stream: bool = False
    content: str | None = None  # kept only when the store's `store_content` is on


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageRow))
_DIMENSIONS = ("session_id", "project", "backend", "model_requested", "model_used", "key_id")
INSERT_SQL = f"INSERT INTO usage ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"


def row_values(row: UsageRow) -> tuple[Any, ...]:
    """The row as `INSERT_SQL` parameters (empty names stored as NULL, booleans as 0/1)."""
    values = []
    for name in ROW_COLUMNS:
        value = getattr(row, name)
        if name in _DIMENSIONS and value == "":
            value = None
        elif name == "stream":
            value = int(bool(value))
        values.append(value)
    return tuple(values)


def attempts_json(attempts: Sequence[Mapping[str, Any]]) -> str:
    """The `attempts` column: each attempt's backend, model, key id and why it failed."""
    keys = ("backend", "model", "key_id", "failure")
    return json.dumps([{k: a.get(k) for k in keys} for a in attempts], separators=(",", ":"))


def _short(text: str | None, limit: int = ERROR_MAX_CHARS) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def row_from_exchange(
    ex: Exchange,
    *,
    project: str | None = None,
    prices: price_table.PriceTable | None = None,
    ts: float | None = None,
    now: float | None = None,
    content: str | None = None,
) -> UsageRow:
    """The usage row of a finished exchange.

    The attempt that answered (or the last one tried) names backend, model used and key. An
    exchange still `pending` is recorded as an `error` (the client went away, or nothing
    answered). `now` is `time.monotonic()` for an exchange without `finished`; `ts` is the wall
    clock at the end; `project` defaults to the session's; `prices` defaults to the built-in
    table (cost null for a model it does not know).
    """
    attempts = ex.route.attempts
    attempt = ex.route.active or (attempts[-1] if attempts else None)
    end = ex.finished if ex.finished is not None else (now if now is not None else time.monotonic())
    usage = ex.usage
    backend = attempt.backend if attempt else None
    model_used = attempt.model if attempt else None
    table = prices if prices is not None else price_table.DEFAULT_PRICES
    cost = table.cost_usd(backend, model_used, usage) if backend and model_used else None
    outcome = "error" if ex.outcome == "pending" else ex.outcome
    return UsageRow(
        ts=ts if ts is not None else time.time(),
        front=ex.front.protocol,
        arrival=ex.front.arrival,
        outcome=outcome,
        session_id=ex.front.session_id,
        project=project if project is not None else (ex.session.project if ex.session else None),
        backend=backend,
        model_requested=ex.requested_model or None,
        model_used=model_used,
        key_id=attempt.key_id if attempt else None,
        attempts=attempts_json(
            [
                {"backend": a.backend, "model": a.model, "key_id": a.key_id, "failure": a.failure}
                for a in attempts
            ]
        ),
        status=ex.status,
        error=_short(ex.error),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cached_tokens=usage.cached_tokens,
        token_source=ex.usage_source,
        cost_usd=cost,
        latency_ms=max(0.0, (end - ex.started) * 1000.0),
        ttft_ms=(ex.first_byte - ex.started) * 1000.0 if ex.first_byte is not None else None,
        stream=ex.front.client_stream,
        content=content,
    )


# ----------------------------------------------------------------------------------------------
# Filters and time parsing
# ----------------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: float) -> float:
    """Unix seconds for `text`: ISO 8601 (naive means UTC) or relative to `now` (`24h` ago).

    Relative forms: a number and a unit, `s`, `m`, `h`, `d` or `w` (`90s`, `15m`, `24h`,
    `7d`, `2w`, `1.5h`), and `now`. Anything else raises ValueError saying what is accepted.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty time: give ISO 8601 (2025-01-31T12:00:00Z) or relative (24h, 7d)")
    if value.lower() == "now":
        return now
    match = _RELATIVE.match(value.lower())
    if match:
        return now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        raise ValueError(
            f"time {text!r} has no unit: add one (s, m, h, d, w) for a relative time, "
            "such as 24h, or give an ISO 8601 date"
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"unreadable time {text!r}: give ISO 8601 (2025-01-31, 2025-01-31T12:00:00Z) "
            "or a relative time (90s, 15m, 24h, 7d, 2w)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(ts: float) -> str:
    """`ts` as ISO 8601 UTC with a `Z`, to the millisecond."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class UsageFilters:
    """Which rows a query covers; every field None means all rows."""

    project: str | None = None
    session: str | None = None
    backend: str | None = None
    model: str | None = None
    since: float | None = None  # unix seconds, inclusive
    until: float | None = None  # unix seconds, exclusive

    @classmethod
    def from_query(cls, params: Mapping[str, str], now: float | None = None) -> UsageFilters:
        """Filters from query parameters (unknown ones ignored; bad times raise ValueError)."""
        at = time.time() if now is None else now

        def text(name: str) -> str | None:
            value = params.get(name)
            return value.strip() or None if value is not None else None

        since, until = text("since"), text("until")
        result = cls(
            project=text("project"),
            session=text("session"),
            backend=text("backend"),
            model=text("model"),
            since=parse_time(since, at) if since else None,
            until=parse_time(until, at) if until else None,
        )
        return result

    def as_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "session": self.session,
            "backend": self.backend,
            "model": self.model,
            "since": iso(self.since) if self.since is not None else None,
            "until": iso(self.until) if self.until is not None else None,
        }


FiltersLike = UsageFilters | Mapping[str, str] | None


def _filters(value: FiltersLike) -> UsageFilters:
    if value is None:
        return UsageFilters()
    if isinstance(value, UsageFilters):
        return value
    return UsageFilters.from_query(value)


def _group(value: str | None) -> GroupBy | None:
    if value is None or value == "":
        return None
    if value not in GROUP_KEYS:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_KEYS)} (got {value!r})")
    return cast(GroupBy, value)


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------

# The rollup stores missing names as '' (NULLs would defeat its primary key); queries map back.
_ROLLUP_DIMS = ("backend", "model_used", "model_requested", "project", "key_id")
_ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_usd",
    "cost_n",
    "latency_n",
    "ttft_n",
)


def _rollup_values(sign: str, ref: str) -> str:
    s = sign
    return (
        f"{s}1, {s}({ref}.outcome = 'error'), {s}ifnull({ref}.input_tokens, 0), "
        f"{s}ifnull({ref}.output_tokens, 0), {s}ifnull({ref}.reasoning_tokens, 0), "
        f"{s}ifnull({ref}.cached_tokens, 0), {s}ifnull({ref}.cost_usd, 0.0), "
        f"{s}({ref}.cost_usd IS NOT NULL), {s}({ref}.latency_ms IS NOT NULL), "
        f"{s}({ref}.ttft_ms IS NOT NULL)"
    )


def _rollup_trigger(name: str, event: str, ref: str, sign: str) -> str:
    dims = ", ".join(f"ifnull({ref}.{d}, '')" for d in _ROLLUP_DIMS)
    update = ", ".join(f"{c} = {c} + excluded.{c}" for c in _ROLLUP_SUMS)
    return f"""
    CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON usage BEGIN
      INSERT INTO usage_hourly (hour, {", ".join(_ROLLUP_DIMS)}, {", ".join(_ROLLUP_SUMS)})
      VALUES (CAST({ref}.ts / 3600 AS INTEGER), {dims}, {_rollup_values(sign, ref)})
      ON CONFLICT DO UPDATE SET {update};
    END"""


TABLE_SQL = """
CREATE TABLE IF NOT EXISTS usage (
  id INTEGER PRIMARY KEY,
  ts REAL NOT NULL,
  session_id TEXT,
  project TEXT,
  front TEXT NOT NULL,
  arrival TEXT NOT NULL,
  backend TEXT,
  model_requested TEXT,
  model_used TEXT,
  key_id TEXT,
  attempts TEXT NOT NULL DEFAULT '[]',
  status INTEGER,
  outcome TEXT NOT NULL,
  error TEXT,
  input_tokens INTEGER,
  output_tokens INTEGER,
  reasoning_tokens INTEGER,
  cached_tokens INTEGER,
  token_source TEXT NOT NULL,
  cost_usd REAL,
  latency_ms REAL,
  ttft_ms REAL,
  stream INTEGER NOT NULL,
  content TEXT,
  model_key TEXT GENERATED ALWAYS AS (coalesce(model_used, model_requested)) VIRTUAL,
  day INTEGER GENERATED ALWAYS AS (CAST(ts / 86400 AS INTEGER)) VIRTUAL
)"""

ROLLUP_SQL = f"""
CREATE TABLE IF NOT EXISTS usage_hourly (
  hour INTEGER NOT NULL,
  {", ".join(f"{d} TEXT NOT NULL" for d in _ROLLUP_DIMS)},
  requests INTEGER NOT NULL, errors INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  reasoning_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
  cost_usd REAL NOT NULL, cost_n INTEGER NOT NULL,
  latency_n INTEGER NOT NULL, ttft_n INTEGER NOT NULL,
  PRIMARY KEY (hour, {", ".join(_ROLLUP_DIMS)})
) WITHOUT ROWID"""

# Raw-row expression of each group key (indexed: the generated columns are).
_RAW_GROUP = {
    "backend": "backend",
    "model": "model_key",
    "project": "project",
    "key": "key_id",
    "day": "day",
}
_ROLLUP_GROUP = {
    "backend": "nullif(backend, '')",
    "model": "coalesce(nullif(model_used, ''), nullif(model_requested, ''))",
    "project": "nullif(project, '')",
    "key": "nullif(key_id, '')",
    "day": "hour / 24",
}
# Index per (leading column, metric) that orders rows by the metric: percentile walks.
_WALK_LEADS = ("backend", "model_key", "project", "key_id", "day")


def _index_name(lead: str | None, metric: str) -> str:
    return f"ix_usage_{lead}_{metric}" if lead else f"ix_usage_{metric}"


INDEX_SQL: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS ix_usage_ts ON usage (ts)",
    "CREATE INDEX IF NOT EXISTS ix_usage_backend_model_ts ON usage (backend, model_key, ts)",
    "CREATE INDEX IF NOT EXISTS ix_usage_project_ts ON usage (project, ts)",
    "CREATE INDEX IF NOT EXISTS ix_usage_session_ts ON usage (session_id, ts)",
    *(
        f"CREATE INDEX IF NOT EXISTS {_index_name(None, m)} ON usage ({m}, ts)"
        for m in ("latency_ms", "ttft_ms")
    ),
    *(
        f"CREATE INDEX IF NOT EXISTS {_index_name(lead, m)} ON usage ({lead}, {m}, ts)"
        for lead in _WALK_LEADS
        for m in ("latency_ms", "ttft_ms")
    ),
)

TRIGGER_SQL = (
    _rollup_trigger("usage_rollup_insert", "INSERT", "NEW", ""),
    _rollup_trigger("usage_rollup_delete", "DELETE", "OLD", "-"),
)


def _pragmas(con: sqlite3.Connection) -> None:
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=5000")
    con.execute("PRAGMA foreign_keys=OFF")


def create_schema(con: sqlite3.Connection, *, indexes: bool = True) -> None:
    """Create (or upgrade to) the current schema on `con`; idempotent.

    `indexes=False` leaves out the indexes (a bulk load is faster without them; open a
    `UsageStore` afterwards and it creates them). The rollup is rebuilt from `usage` when it
    is newly created over existing rows.
    """
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    found = row[0] if row else None
    if found is not None and found > SCHEMA_VERSION:
        raise RuntimeError(
            f"the usage database has schema version {found}, newer than this proxy's "
            f"{SCHEMA_VERSION}: use a newer proxy or another file"
        )
    con.execute(TABLE_SQL)
    had_rollup = _table_exists(con, "usage_hourly")
    con.execute(ROLLUP_SQL)
    for sql in TRIGGER_SQL:
        con.execute(sql)
    if not had_rollup:
        rebuild_rollup(con)
    if indexes:
        for sql in INDEX_SQL:
            con.execute(sql)
    if found is None:
        con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _table_exists(con: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return con.execute(sql, (name,)).fetchone() is not None


def rebuild_rollup(con: sqlite3.Connection) -> None:
    """Recompute `usage_hourly` from every row of `usage` (after a load without triggers)."""
    dims = ", ".join(f"ifnull({d}, '')" for d in _ROLLUP_DIMS)
    sums = (
        "count(*), sum(outcome = 'error'), total(input_tokens), total(output_tokens), "
        "total(reasoning_tokens), total(cached_tokens), total(cost_usd), count(cost_usd), "
        "count(latency_ms), count(ttft_ms)"
    )
    con.execute("DELETE FROM usage_hourly")
    con.execute(
        f"INSERT INTO usage_hourly (hour, {', '.join(_ROLLUP_DIMS)}, {', '.join(_ROLLUP_SUMS)}) "
        f"SELECT CAST(ts / 3600 AS INTEGER), {dims}, {sums} FROM usage "
        f"GROUP BY 1, 2, 3, 4, 5, 6"
    )


# ----------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sums:
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    cost_n: int = 0
    latency_n: int = 0
    ttft_n: int = 0

    def add(self, values: Sequence[Any]) -> None:
        self.requests += int(values[0] or 0)
        self.errors += int(values[1] or 0)
        self.input_tokens += int(values[2] or 0)
        self.output_tokens += int(values[3] or 0)
        self.reasoning_tokens += int(values[4] or 0)
        self.cached_tokens += int(values[5] or 0)
        self.cost_usd += float(values[6] or 0.0)
        self.cost_n += int(values[7] or 0)
        self.latency_n += int(values[8] or 0)
        self.ttft_n += int(values[9] or 0)

    def count(self, metric: Metric) -> int:
        return self.latency_n if metric == "latency_ms" else self.ttft_n


_RAW_SUMS = (
    "count(*), sum(outcome = 'error'), total(input_tokens), total(output_tokens), "
    "total(reasoning_tokens), total(cached_tokens), total(cost_usd), count(cost_usd), "
    "count(latency_ms), count(ttft_ms)"
)
_ROLLUP_SUM_SQL = ", ".join(f"sum({c})" for c in _ROLLUP_SUMS)


@dataclass(slots=True)
class _Where:
    """A WHERE clause and its parameters, built up condition by condition."""

    parts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, sql: str, *params: Any) -> None:
        self.parts.append(sql)
        self.params.extend(params)

    def sql(self) -> str:
        return " AND ".join(self.parts) if self.parts else "1"


def _raw_where(f: UsageFilters, since: float | None, until: float | None) -> _Where:
    w = _Where()
    if f.project is not None:
        w.add("project = ?", f.project)
    if f.session is not None:
        w.add("session_id = ?", f.session)
    if f.backend is not None:
        w.add("backend = ?", f.backend)
    if f.model is not None:
        w.add("(model_used = ? OR model_requested = ?)", f.model, f.model)
    if since is not None:
        w.add("ts >= ?", since)
    if until is not None:
        w.add("ts < ?", until)
    return w


def _rollup_where(f: UsageFilters, hour_lo: int | None, hour_hi: int | None) -> _Where:
    w = _Where()
    if f.project is not None:
        w.add("project = ?", f.project)
    if f.backend is not None:
        w.add("backend = ?", f.backend)
    if f.model is not None:
        w.add("(model_used = ? OR model_requested = ?)", f.model, f.model)
    if hour_lo is not None:
        w.add("hour >= ?", hour_lo)
    if hour_hi is not None:
        w.add("hour < ?", hour_hi)
    return w


def _rank(n: int, p: int) -> int:
    """Nearest rank (1-based) of the p-th percentile among n sorted values."""
    return max(1, (n * p + 99) // 100)


GroupValue = str | int | None
_TOTAL = "__total__"


class _Reader:
    """One `stats` or `recent` call on one connection, inside one read transaction."""

    # Relative cost of a row read and sorted by the window query against an index entry
    # stepped over by a walk (measured with bench/usage.py: roughly 1 us against 25-50 ns).
    WINDOW_ROW_COST = 25.0

    def __init__(self, con: sqlite3.Connection, filters: UsageFilters) -> None:
        self.con = con
        self.f = filters

    # -- sums -----------------------------------------------------------------------------

    def sums(self, group: GroupBy | None) -> dict[GroupValue, _Sums]:
        out: dict[GroupValue, _Sums] = {}
        for key, values in self._sum_rows(group):
            out.setdefault(key, _Sums()).add(values)
        return out

    def _sum_rows(self, group: GroupBy | None) -> Iterator[tuple[GroupValue, Sequence[Any]]]:
        f = self.f
        if f.session is not None:
            yield from self._raw_sums(group, f.since, f.until)
            return
        lo, hi, edges = _split_hours(f.since, f.until)
        if lo is None or hi is None or lo < hi:
            yield from self._rollup_sums(group, lo, hi)
        for since, until in edges:
            yield from self._raw_sums(group, since, until)

    def _raw_sums(
        self, group: GroupBy | None, since: float | None, until: float | None
    ) -> Iterator[tuple[GroupValue, Sequence[Any]]]:
        w = _raw_where(self.f, since, until)
        key = _RAW_GROUP[group] if group else "NULL"
        sql = f"SELECT {key}, {_RAW_SUMS} FROM usage WHERE {w.sql()} GROUP BY 1"
        for row in self.con.execute(sql, w.params):
            if row[1]:
                yield row[0], row[1:]

    def _rollup_sums(
        self, group: GroupBy | None, lo: int | None, hi: int | None
    ) -> Iterator[tuple[GroupValue, Sequence[Any]]]:
        w = _rollup_where(self.f, lo, hi)
        key = _ROLLUP_GROUP[group] if group else "NULL"
        sql = f"SELECT {key}, {_ROLLUP_SUM_SQL} FROM usage_hourly WHERE {w.sql()} GROUP BY 1"
        for row in self.con.execute(sql, w.params):
            if row[1]:
                yield row[0], row[1:]

    # -- percentiles ------------------------------------------------------------------------

    def percentiles(
        self, group: GroupBy | None, sums: Mapping[GroupValue, _Sums], total: _Sums
    ) -> dict[GroupValue, dict[str, float | None]]:
        """p50/p95 of each metric for the whole filtered set (`_TOTAL`) and for each group."""
        out: dict[GroupValue, dict[str, float | None]] = {_TOTAL: {}}
        for key in sums:
            out[key] = {}
        for metric in METRICS:
            for key, values in self._metric_total(metric, total).items():
                out[_TOTAL].update(values)
                del key
            if group is not None:
                for key, values in self._metric_groups(metric, group, sums).items():
                    out.setdefault(key, {}).update(values)
        return out

    def _metric_total(self, metric: Metric, total: _Sums) -> dict[GroupValue, dict[str, Any]]:
        n = total.count(metric)
        if n == 0:
            return {_TOTAL: _none(metric)}
        lead = self._filter_lead()
        if lead is not None and self._walk_cost(n) < self.WINDOW_ROW_COST * n:
            column, value = lead
            return {_TOTAL: self._walk(metric, column, value, n)}
        found = self._window(metric, None)
        return {_TOTAL: found.get(None, _none(metric))}

    def _metric_groups(
        self, metric: Metric, group: GroupBy, sums: Mapping[GroupValue, _Sums]
    ) -> dict[GroupValue, dict[str, Any]]:
        counts = {k: s.count(metric) for k, s in sums.items() if s.count(metric) > 0}
        out: dict[GroupValue, dict[str, Any]] = {k: _none(metric) for k in sums}
        if not counts:
            return out
        walkable = self._filter_lead() == ("", None)  # no equality filter: walk by the group
        walk_cost = sum(self._walk_cost(n) for n in counts.values())
        if walkable and walk_cost < self.WINDOW_ROW_COST * sum(counts.values()):
            column = _RAW_GROUP[group]
            for key, n in counts.items():
                out[key] = self._walk(metric, column, key, n)
            return out
        out.update(self._window(metric, _RAW_GROUP[group]))
        return out

    def _filter_lead(self) -> tuple[str, Any] | None:
        """The index lead the filters allow a walk on: ("", None) for none needed, None if
        the filters cannot be checked inside any metric index (session, model, two names)."""
        f = self.f
        if f.session is not None or f.model is not None:
            return None
        named = [(c, v) for c, v in (("backend", f.backend), ("project", f.project)) if v]
        if len(named) > 1:
            return None
        return named[0] if named else ("", None)

    def _walk_cost(self, n: int) -> float:
        """Index entries a walk steps over to reach both percentiles of n rows (estimate)."""
        share = self._time_share()
        steps = sum(min(_rank(n, p), n - _rank(n, p) + 1) for p in PERCENTILES)
        return steps / share + 2 * math.log2(n + 1)

    def _time_share(self) -> float:
        """The share of the indexed rows the since/until range holds (1 without a range)."""
        f = self.f
        if f.since is None and f.until is None:
            return 1.0
        lo, hi = self.con.execute("SELECT min(ts), max(ts) FROM usage").fetchone()
        if lo is None or hi <= lo:
            return 1.0
        start = max(lo, f.since if f.since is not None else lo)
        end = min(hi, f.until if f.until is not None else hi)
        return max(1e-6, min(1.0, (end - start) / (hi - lo)))

    def _walk(self, metric: Metric, column: str, value: Any, n: int) -> dict[str, Any]:
        """Percentiles read by stepping along the (column, metric, ts) index, OFFSET rows."""
        lead = column or None
        w = _Where()
        if lead:
            w.add(f"{lead} IS ?", value)
        w.add(f"{metric} IS NOT NULL")
        if self.f.since is not None:
            w.add("ts >= ?", self.f.since)
        if self.f.until is not None:
            w.add("ts < ?", self.f.until)
        index = _index_name(lead, metric)
        out: dict[str, Any] = {}
        for p in PERCENTILES:
            rank = _rank(n, p)
            ascending = rank <= n - rank + 1
            order, offset = ("ASC", rank - 1) if ascending else ("DESC", n - rank)
            sql = (
                f"SELECT {metric} FROM usage INDEXED BY {index} WHERE {w.sql()} "
                f"ORDER BY {metric} {order} LIMIT 1 OFFSET ?"
            )
            row = self.con.execute(sql, [*w.params, offset]).fetchone()
            out[f"{metric}_p{p}"] = row[0] if row else None
        return out

    def _window(self, metric: Metric, group_sql: str | None) -> dict[GroupValue, dict[str, Any]]:
        """Percentiles of every group (or of the whole set) in one window-function query."""
        w = _raw_where(self.f, self.f.since, self.f.until)
        w.add(f"{metric} IS NOT NULL")
        key = group_sql or "NULL"
        partition = f"PARTITION BY {group_sql} " if group_sql else ""
        wanted = " OR ".join(f"rn = (cnt * {p} + 99) / 100" for p in PERCENTILES)
        sql = (
            f"SELECT g, v, rn, cnt FROM (SELECT {key} AS g, {metric} AS v, "
            f"row_number() OVER ({partition}ORDER BY {metric}) AS rn, "
            f"count(*) OVER ({partition.strip()}) AS cnt "
            f"FROM usage WHERE {w.sql()}) WHERE {wanted}"
        )
        out: dict[GroupValue, dict[str, Any]] = {}
        for g, v, rn, cnt in self.con.execute(sql, w.params):
            values = out.setdefault(g, {})
            for p in PERCENTILES:
                if rn == _rank(cnt, p):
                    values[f"{metric}_p{p}"] = v
        return out

    # -- recent -----------------------------------------------------------------------------

    def recent(self, limit: int) -> list[dict[str, Any]]:
        w = _raw_where(self.f, self.f.since, self.f.until)
        columns = ", ".join(("id", *ROW_COLUMNS))
        sql = f"SELECT {columns} FROM usage WHERE {w.sql()} ORDER BY ts DESC, id DESC LIMIT ?"
        cursor = self.con.execute(sql, [*w.params, limit])
        names = [d[0] for d in cursor.description]
        return [_row_json(dict(zip(names, row, strict=True))) for row in cursor]


def _none(metric: Metric) -> dict[str, Any]:
    return {f"{metric}_p{p}": None for p in PERCENTILES}


def _split_hours(
    since: float | None, until: float | None
) -> tuple[int | None, int | None, list[tuple[float | None, float | None]]]:
    """Whole hours [lo, hi) the rollup answers for, and the raw-row edges around them."""
    lo = math.ceil(since / 3600) if since is not None else None
    hi = math.floor(until / 3600) if until is not None else None
    if lo is not None and hi is not None and lo >= hi:
        return lo, hi, [(since, until)]  # within one hour (or empty): raw rows only
    edges: list[tuple[float | None, float | None]] = []
    if since is not None and lo is not None and since < lo * 3600:
        edges.append((since, lo * 3600.0))
    if until is not None and hi is not None and hi * 3600 < until:
        edges.append((hi * 3600.0, until))
    return lo, hi, edges


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    row["time"] = iso(row["ts"])
    try:
        row["attempts"] = json.loads(row["attempts"] or "[]")
    except ValueError:
        row["attempts"] = []
    row["stream"] = bool(row["stream"])
    return row


def _summary(sums: _Sums, pct: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "requests": sums.requests,
        "errors": sums.errors,
        "input_tokens": sums.input_tokens,
        "output_tokens": sums.output_tokens,
        "reasoning_tokens": sums.reasoning_tokens,
        "cached_tokens": sums.cached_tokens,
        "cost_usd": round(sums.cost_usd, 9) if sums.cost_n else None,
        "priced_requests": sums.cost_n,
        **{f"{m}_p{p}": pct.get(f"{m}_p{p}") for m in METRICS for p in PERCENTILES},
    }


def _group_label(group: GroupBy, key: GroupValue) -> str | None:
    if key is None:
        return None
    if group == "day":
        return datetime.fromtimestamp(int(key) * 86400, UTC).date().isoformat()
    return str(key)


# ----------------------------------------------------------------------------------------------
# Prometheus metrics
# ----------------------------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(slots=True)
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    """In-memory counters since process start, in Prometheus text exposition format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.latency: dict[tuple[str, str], _Histogram] = {}

    def observe(self, row: UsageRow) -> None:
        backend = row.backend or "none"
        model = row.model_used or row.model_requested or "none"
        with self._lock:
            key = (backend, model, row.outcome)
            self.requests[key] = self.requests.get(key, 0) + 1
            for direction, count in (("in", row.input_tokens), ("out", row.output_tokens)):
                if count:
                    tkey = (backend, model, direction)
                    self.tokens[tkey] = self.tokens.get(tkey, 0) + count
            if row.outcome == "error":
                self.errors[(backend, model)] = self.errors.get((backend, model), 0) + 1
            if row.latency_ms is not None:
                self.latency.setdefault((backend, model), _Histogram()).observe(
                    row.latency_ms / 1000.0
                )

    def text(self) -> str:
        with self._lock:
            lines = [
                *self._counter(
                    "llm_proxy_requests_total",
                    "LLM exchanges finished, by backend, model and outcome.",
                    {_labels(backend=b, model=m, outcome=o): n for (b, m, o), n in self.requests.items()},
                ),
                *self._counter(
                    "llm_proxy_tokens_total",
                    "Tokens by backend, model and direction (in includes cached, out reasoning).",
                    {_labels(backend=b, model=m, direction=d): n for (b, m, d), n in self.tokens.items()},
                ),
                *self._counter(
                    "llm_proxy_errors_total",
                    "LLM exchanges that ended in an error, by backend and model.",
                    {_labels(backend=b, model=m): n for (b, m), n in self.errors.items()},
                ),
                *self._histogram(),
            ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _counter(name: str, help_text: str, samples: Mapping[str, int]) -> list[str]:
        lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines.extend(f"{name}{labels} {n}" for labels, n in sorted(samples.items()))
        return lines

    def _histogram(self) -> list[str]:
        name = "llm_proxy_request_latency_seconds"
        lines = [
            f"# HELP {name} Time from request to the end of the answer, by backend and model.",
            f"# TYPE {name} histogram",
        ]
        for (backend, model), h in sorted(self.latency.items()):
            for bound, count in zip(LATENCY_BUCKETS, h.buckets, strict=True):
                labels = _labels(backend=backend, model=model, le=_num(bound))
                lines.append(f"{name}_bucket{labels} {count}")
            lines.append(f"{name}_bucket{_labels(backend=backend, model=model, le='+Inf')} {h.count}")
            lines.append(f"{name}_sum{_labels(backend=backend, model=model)} {_num(h.total)}")
            lines.append(f"{name}_count{_labels(backend=backend, model=model)} {h.count}")
        return lines


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------


class _Barrier:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class UsageStore:
    """The usage sqlite file, its writer thread, its queries and the live counters."""

    BATCH_MAX = 1000
    READ_CACHE_KIB = 65536

    def __init__(self, path: str, *, store_content: bool = False) -> None:
        self.path = path
        self.store_content = store_content
        self.metrics = Metrics()
        self.written = 0  # rows committed by the writer
        self.failed = 0  # rows the writer could not insert (logged)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        con = self._connect()
        try:
            with con:
                create_schema(con)
        finally:
            con.close()
        self._writer = threading.Thread(target=self._write_loop, name="usage-writer", daemon=True)
        self._writer.start()

    # -- writing ----------------------------------------------------------------------------

    def record(self, row: UsageRow) -> None:
        """Queue `row` for the writer and count it; returns at once, never blocks."""
        if self._closed:
            logger.warning("usage row dropped: the usage store is closed")
            return
        if row.content is not None and not self.store_content:
            row = replace(row, content=None)
        self.metrics.observe(row)
        self._queue.put(row)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every row recorded before this call is committed; False on timeout."""
        if not self._writer.is_alive():
            return self._queue.empty()
        barrier = _Barrier()
        self._queue.put(barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush, stop the writer and close every connection; later records are dropped."""
        if self._closed:
            return
        self._closed = True
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout)
        with self._readers_lock:
            for con in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            self._readers.clear()

    def __enter__(self) -> UsageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        _pragmas(con)
        return con

    def _write_loop(self) -> None:
        con = self._connect()
        try:
            while True:
                items = self._take()
                rows = [x for x in items if isinstance(x, UsageRow)]
                if rows:
                    self._insert(con, rows)
                for item in items:
                    if isinstance(item, _Barrier):
                        item.done.set()
                if any(item is _STOP for item in items):
                    return
        finally:
            con.close()

    def _take(self) -> list[object]:
        """The next batch: wait for one item, then whatever else is queued (up to a limit)."""
        items = [self._queue.get()]
        while len(items) < self.BATCH_MAX and items[-1] is not _STOP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _insert(self, con: sqlite3.Connection, rows: list[UsageRow]) -> None:
        for attempt in range(3):
            try:
                self._commit(con, [row_values(r) for r in rows])
                self.written += len(rows)
                return
            except sqlite3.OperationalError as exc:  # locked, busy, disk I/O: try again
                logger.warning("usage rows not written yet (%s), retrying", exc)
                time.sleep(0.05 * (attempt + 1))
            except sqlite3.Error:
                break
        if len(rows) > 1:  # one bad row must not lose the batch
            for row in rows:
                self._insert(con, [row])
            return
        self.failed += 1
        logger.error("a usage row could not be written and is dropped", exc_info=True)

    @staticmethod
    def _commit(con: sqlite3.Connection, values: list[tuple[Any, ...]]) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(INSERT_SQL, values)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only=ON")
            con.execute(f"PRAGMA cache_size=-{self.READ_CACHE_KIB}")
            self._local.con = con
            with self._readers_lock:
                self._readers.append(con)
        return con

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise RuntimeError("the usage store is closed")
        con = self._reader()
        con.execute("BEGIN")
        try:
            yield con
        finally:
            con.execute("COMMIT")

    def stats(self, filters: FiltersLike = None, group_by: str | None = None) -> dict[str, Any]:
        """Totals (and per-group totals) of the filtered rows: the `/usage/stats` body."""
        f = _filters(filters)
        group = _group(group_by)
        with self._snapshot() as con:
            reader = _Reader(con, f)
            grouped = reader.sums(group)
            total = _Sums()
            for s in grouped.values():
                total.add([getattr(s, c) for c in _ROLLUP_SUMS])
            pct = reader.percentiles(group, grouped if group else {}, total)
        groups = [
            {"key": _group_label(group, key), **_summary(s, pct.get(key, {}))}
            for key, s in grouped.items()
        ] if group else []
        if group == "day":
            groups.sort(key=lambda g: (g["key"] is None, g["key"] or ""))
        else:
            groups.sort(key=lambda g: (-g["requests"], g["key"] is None, g["key"] or ""))
        return {
            "filters": f.as_json(),
            "group_by": group,
            "totals": _summary(total, pct[_TOTAL]),
            "groups": groups,
        }

    def recent(self, filters: FiltersLike = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest filtered rows first, at most `limit` (capped at 1000; < 1 is an error)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1 (got {limit})")
        f = _filters(filters)
        with self._snapshot() as con:
            return _Reader(con, f).recent(min(limit, RECENT_MAX))

    def metrics_text(self) -> str:
        """Prometheus text exposition of the counters since process start (`GET /metrics`)."""
        return self.metrics.text()

    def row_count(self) -> int:
        with self._snapshot() as con:
            return int(con.execute("SELECT count(*) FROM usage").fetchone()[0])


def as_dict(row: UsageRow) -> dict[str, Any]:
    """A row as plain data (for logs and live views; holds `content` if the row does)."""
    return asdict(row)
