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

How `stats` stays fast on millions of rows (numbers: `bench/usage.py`):
- Sums come from two rollups, `usage_daily` and `usage_hourly`, kept by sqlite triggers in the
  same transaction as each row (so they never disagree with `usage`, whatever wrote the row):
  one row per period, backend, model used, model requested, project and key. A range is summed
  from whole days, then whole hours, then raw rows for the partial hours at its edges. A
  `session` filter (not in the rollups) sums raw rows through the session index.
- Percentiles are nearest rank: the value at rank ceil(p/100 * n) of the n non-null values in
  ascending order. When sorting the filtered rows reads few rows through an index (a session's,
  a short time range's, a project's in it: at most `_Reader.EXACT_ROWS`, about 2 us a row),
  they are exact: one window-function query sorts them. Otherwise they are read off histograms:
  each row's metrics carry a bucket (32 a doubling: the middle of a bucket, which is the value
  reported, is within 1.1% of every value in it), and triggers count the buckets per UTC day in
  one table per lead of `PERCENTILE_LEADS` (the lead's values, metric, day, bucket). A lead serves
  when its rows are exactly the filtered rows (of one group): by construction (the filters and
  the group are the lead), or proved by the rollups' counts (a backend's models or keys, when
  no other backend has rows with those names); whole days come from its table, the partial
  days at the range's edges from the rows' buckets. A filter and a group on two unrelated names
  (`project=x&group_by=key`) over many rows sorts the filtered rows, about 2 us a row and
  metric.
- Writing a row costs little more as the file grows (42-51 us of CPU in a new file, 71 us at
  1,000,000 rows): the histogram counts of a day are a few pages every row of that day updates.
  (Schema 2 read exact percentiles off 14 indexes ordered by each metric; every row landed at a
  random place in each, and at 300,000 rows a row cost the writer 281 us against 58.)

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
import functools
import json
import logging
import math
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, cast

from protocol import prices as price_table
from protocol.wire import dumps

if TYPE_CHECKING:
    from protocol.exchange import Exchange

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: `redactions` column; 3: metric buckets and histograms for percentiles
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
    redactions: int = 0  # secrets replaced in the prompt and the answer (never the secrets)


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageRow))
# each metric's histogram bucket rides along in its row (computed here: sqlite builds without
# math functions exist), so the triggers that keep the histograms need no function of ours
BUCKET_COLUMNS: tuple[str, ...] = tuple(f"{m}_bucket" for m in METRICS)
INSERT_COLUMNS = (*ROW_COLUMNS, *BUCKET_COLUMNS)
_DIMENSIONS = ("session_id", "project", "backend", "model_requested", "model_used", "key_id")
INSERT_SQL = (
    f"INSERT INTO usage ({', '.join(INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INSERT_COLUMNS))})"
)
# A batch goes in as multi-row INSERT statements of up to `BATCH_ROWS_PER_STATEMENT` rows: sqlite
# runs each in one step, so the writer thread takes Python's GIL back once per statement instead
# of once per row (with the event loop's thread busy, each taking costs that thread as much as
# the row's own insert), and the values are bound as they are (no JSON to re-parse per column).
BATCH_ROWS_PER_STATEMENT = 100


@functools.cache
def batch_insert_sql(rows: int) -> str:
    """`INSERT_SQL` for `rows` rows in one statement."""
    one = f"({', '.join('?' * len(INSERT_COLUMNS))})"
    return f"INSERT INTO usage ({', '.join(INSERT_COLUMNS)}) VALUES {', '.join([one] * rows)}"


_ROW_GETTER = attrgetter(*ROW_COLUMNS)
_DIMENSION_INDEXES = tuple(i for i, name in enumerate(ROW_COLUMNS) if name in _DIMENSIONS)
_STREAM_INDEX = ROW_COLUMNS.index("stream")


def row_values(row: UsageRow) -> tuple[Any, ...]:
    """The row as `INSERT_SQL` parameters (empty names stored as NULL, booleans as 0/1, then
    the metrics' histogram buckets)."""
    values = list(_ROW_GETTER(row))
    for i in _DIMENSION_INDEXES:
        if values[i] == "":
            values[i] = None
    values[_STREAM_INDEX] = int(bool(values[_STREAM_INDEX]))
    values.append(metric_bucket(row.latency_ms))
    values.append(metric_bucket(row.ttft_ms))
    return tuple(values)


# Histogram buckets of a metric (milliseconds): 32 a doubling, so a value read off a bucket (its
# geometric middle) is within 1.1% of any value in it. Zero and below share one bucket.
BUCKETS_PER_DOUBLING = 32
ZERO_BUCKET = -(2**20)


def metric_bucket(value: float | None) -> int | None:
    """The histogram bucket of a metric's value (None for no value)."""
    if value is None:
        return None
    if value <= 0:
        return ZERO_BUCKET
    return math.floor(math.log2(value) * BUCKETS_PER_DOUBLING)


def bucket_value(bucket: int) -> float:
    """The value a bucket stands for: its geometric middle (0 for the zero bucket)."""
    if bucket == ZERO_BUCKET:
        return 0.0
    return float(f"{2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING):.6g}")


def attempts_json(attempts: Sequence[Mapping[str, Any]]) -> str:
    """The `attempts` column: each attempt's backend, model, key id and why it failed."""
    keys = ("backend", "model", "key_id", "failure")
    return dumps([{k: a.get(k) for k in keys} for a in attempts])


def _short(text: str | None, limit: int = ERROR_MAX_CHARS) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _project(ex: Exchange) -> str | None:
    """A session's `!/set(project=...)` wins over the request's `x-project` header."""
    return ex.session.project if ex.session and ex.session.project else ex.project


def row_from_exchange(
    ex: Exchange,
    *,
    prices: price_table.PriceTable | None = None,
    ts: float | None = None,
    now: float | None = None,
    content: str | None = None,
) -> UsageRow:
    """The usage row of a finished exchange.

    The attempt that answered (or the last one tried) names backend, model used and key. An
    exchange still `pending` is recorded as an `error` (the client went away, or nothing
    answered). `now` is `time.monotonic()` for an exchange without `finished`; `ts` is the wall
    clock at the end; the project is the session's, else the request's (`x-project`);
    `prices` defaults to the built-in table (cost null for a model it does not know).
    """
    planned = ex.route.attempts
    attempt = ex.route.active or (planned[-1] if planned else None)
    # the attempts made (or skipped with a reason), not the plan's untried tail
    attempts = planned[: ex.route.current + 1] if ex.route.active else planned
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
        project=_project(ex),
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
        redactions=ex.redactions,
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
        return _in_range(text, now - float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
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
    return _in_range(text, parsed.timestamp())


def _in_range(text: str, ts: float) -> float:
    try:
        datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"time {text!r} is out of range") from None
    return ts


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
        return cls(
            project=text("project"),
            session=text("session"),
            backend=text("backend"),
            model=text("model"),
            since=parse_time(since, at) if since else None,
            until=parse_time(until, at) if until else None,
        )

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

# The rollups store a missing name as '' (a NULL would defeat the primary key); queries map
# '' back to NULL. `period` is the hour (usage_hourly) or the UTC day (usage_daily) since 1970.
_ROLLUPS = {"hour": ("usage_hourly", 3600), "day": ("usage_daily", 86400)}
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


def _rollup_table_sql(table: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS {table} (
      period INTEGER NOT NULL,
      {", ".join(f"{d} TEXT NOT NULL" for d in _ROLLUP_DIMS)},
      requests INTEGER NOT NULL, errors INTEGER NOT NULL,
      input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
      reasoning_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
      cost_usd REAL NOT NULL, cost_n INTEGER NOT NULL,
      latency_n INTEGER NOT NULL, ttft_n INTEGER NOT NULL,
      PRIMARY KEY (period, {", ".join(_ROLLUP_DIMS)})
    ) WITHOUT ROWID"""


def _rollup_upsert(table: str, seconds: int, ref: str, sign: str) -> str:
    """The trigger statement adding (sign '') or removing (sign '-') row `ref` in `table`."""
    s = sign
    dims = ", ".join(f"ifnull({ref}.{d}, '')" for d in _ROLLUP_DIMS)
    values = (
        f"{s}1, {s}({ref}.outcome = 'error'), {s}ifnull({ref}.input_tokens, 0), "
        f"{s}ifnull({ref}.output_tokens, 0), {s}ifnull({ref}.reasoning_tokens, 0), "
        f"{s}ifnull({ref}.cached_tokens, 0), {s}ifnull({ref}.cost_usd, 0.0), "
        f"{s}({ref}.cost_usd IS NOT NULL), {s}({ref}.latency_ms IS NOT NULL), "
        f"{s}({ref}.ttft_ms IS NOT NULL)"
    )
    update = ", ".join(f"{c} = {c} + excluded.{c}" for c in _ROLLUP_SUMS)
    return (
        f"INSERT INTO {table} (period, {', '.join(_ROLLUP_DIMS)}, {', '.join(_ROLLUP_SUMS)}) "
        f"VALUES (CAST({ref}.ts / {seconds} AS INTEGER), {dims}, {values}) "
        f"ON CONFLICT DO UPDATE SET {update};"
    )


def _trigger(name: str, event: str, statements: Iterable[str]) -> str:
    body = "\n".join(statements)
    return f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON usage BEGIN\n{body}\nEND"


def _rollup_trigger(name: str, event: str, ref: str, sign: str) -> str:
    return _trigger(
        name, event, (_rollup_upsert(t, secs, ref, sign) for t, secs in _ROLLUPS.values())
    )


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
  redactions INTEGER NOT NULL DEFAULT 0,
  latency_ms_bucket INTEGER,
  ttft_ms_bucket INTEGER,
  model_key TEXT GENERATED ALWAYS AS (coalesce(model_used, model_requested)) VIRTUAL,
  day INTEGER GENERATED ALWAYS AS (CAST(ts / 86400 AS INTEGER)) VIRTUAL
)"""

# Each group key as a raw-row expression (an indexed column: model_key and day are generated)
# and as a rollup expression.
_RAW_GROUP: dict[GroupBy, str] = {
    "backend": "backend",
    "model": "model_key",
    "project": "project",
    "key": "key_id",
    "day": "day",
}
_ROLLUP_GROUP: dict[GroupBy, str] = {
    "backend": "nullif(backend, '')",
    "model": "coalesce(nullif(model_used, ''), nullif(model_requested, ''))",
    "project": "nullif(project, '')",
    "key": "nullif(key_id, '')",
}


Lead = tuple[str, ...]
# The leads of the histogram tables (and of their percentiles), most specific first: the rows
# with these columns equal to given values are counted per day and bucket (`day` is every
# table's period, so its lead is the table without one: `hist_table`).
PERCENTILE_LEADS: tuple[Lead, ...] = (
    ("backend", "model_key"),
    ("project", "model_key"),  # a project's models: `project=x&group_by=model`
    ("backend",),
    ("model_key",),
    ("project",),
    ("key_id",),
    ("day",),
    (),
)


# The lead columns as a new or deleted row's expressions (`model_key` and `day` are generated).
_LEAD_EXPR = {
    "backend": "{r}.backend",
    "model_key": "coalesce({r}.model_used, {r}.model_requested)",
    "project": "{r}.project",
    "key_id": "{r}.key_id",
}
_METRIC_CODE: dict[Metric, int] = {"latency_ms": 0, "ttft_ms": 1}


def _hist_lead(lead: Lead) -> Lead:
    """The lead of the histogram table that serves `lead`: `day` is every table's period."""
    return tuple(c for c in lead if c != "day")


HIST_LEADS: tuple[Lead, ...] = tuple(dict.fromkeys(_hist_lead(lead) for lead in PERCENTILE_LEADS))


def hist_table(lead: Lead) -> str:
    """The histogram table of a lead: per lead values, metric, UTC day and bucket, a count
    (ordered so that one lead's days of one metric are one range of the key)."""
    return "_".join(("usage_hist", *_hist_lead(lead)))


def _hist_table_sql(lead: Lead) -> str:
    columns = "".join(f"{c} TEXT NOT NULL, " for c in lead)
    return (
        f"CREATE TABLE IF NOT EXISTS {hist_table(lead)} (day INTEGER NOT NULL, {columns}"
        f"metric INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, "
        f"PRIMARY KEY ({''.join(f'{c}, ' for c in lead)}metric, day, bucket)) WITHOUT ROWID"
    )


def _hist_upsert(lead: Lead, metric: Metric, ref: str, sign: str) -> str:
    """The trigger statement counting row `ref`'s metric in (sign '') or out (sign '-')."""
    values = "".join(f"ifnull({_LEAD_EXPR[c].format(r=ref)}, ''), " for c in lead)
    bucket = f"{ref}.{metric}_bucket"
    return (
        f"INSERT INTO {hist_table(lead)} (day, {''.join(f'{c}, ' for c in lead)}metric, bucket, n) "
        f"SELECT CAST({ref}.ts / 86400 AS INTEGER), {values}{_METRIC_CODE[metric]}, {bucket}, "
        f"{sign}1 WHERE {bucket} IS NOT NULL ON CONFLICT DO UPDATE SET n = n + excluded.n;"
    )


def _hist_trigger(name: str, event: str, ref: str, sign: str) -> str:
    return _trigger(
        name, event, (_hist_upsert(lead, m, ref, sign) for lead in HIST_LEADS for m in METRICS)
    )


INDEX_SQL: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS ix_usage_ts ON usage (ts)",
    "CREATE INDEX IF NOT EXISTS ix_usage_project_ts ON usage (project, ts)",
    "CREATE INDEX IF NOT EXISTS ix_usage_session_ts ON usage (session_id, ts)",
)
# Schema 2 read percentiles off an index per lead and metric: every row then landed at a random
# place in each of 14 indexes, which cost the writer more the larger the file grew.
_SCHEMA_2_LEADS = ("backend_model_key", "backend", "model_key", "project", "key_id", "day", "")
_OLD_WALK_INDEXES = tuple(
    "_".join(p for p in ("ix_usage", lead, m) if p) for lead in _SCHEMA_2_LEADS for m in METRICS
)

TRIGGER_SQL = (
    _rollup_trigger("usage_rollup_insert", "INSERT", "NEW", ""),
    _rollup_trigger("usage_rollup_delete", "DELETE", "OLD", "-"),
    _hist_trigger("usage_hist_insert", "INSERT", "NEW", ""),
    _hist_trigger("usage_hist_delete", "DELETE", "OLD", "-"),
)


def _pragmas(con: sqlite3.Connection) -> None:
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=5000")


def create_schema(con: sqlite3.Connection, *, indexes: bool = True) -> None:
    """Create (or complete) the current schema on `con`; idempotent.

    `indexes=False` leaves the indexes out (a bulk load is faster without them; a `UsageStore`
    opened on the file afterwards creates them). A rollup created over existing rows is filled
    from them.
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
    columns = {r[1] for r in con.execute("PRAGMA table_info(usage)")}
    if "redactions" not in columns:  # version 1
        con.execute("ALTER TABLE usage ADD COLUMN redactions INTEGER NOT NULL DEFAULT 0")
    if BUCKET_COLUMNS[0] not in columns:  # versions 1 and 2
        rows = con.execute("SELECT count(*) FROM usage").fetchone()[0]
        if rows:
            # about 8 s for 300,000 rows, once: the proxy starts listening afterwards
            logger.warning(
                "usage file: giving %d rows their percentile histograms (once, after an upgrade)",
                rows,
            )
        for column in BUCKET_COLUMNS:
            con.execute(f"ALTER TABLE usage ADD COLUMN {column} INTEGER")
        con.create_function("llm_metric_bucket", 1, metric_bucket, deterministic=True)
        con.execute(
            "UPDATE usage SET latency_ms_bucket = llm_metric_bucket(latency_ms), "
            "ttft_ms_bucket = llm_metric_bucket(ttft_ms)"
        )
    for name in _OLD_WALK_INDEXES:
        con.execute(f"DROP INDEX IF EXISTS {name}")
    missing = [t for t, _ in _ROLLUPS.values() if not _table_exists(con, t)]
    for table, _ in _ROLLUPS.values():
        con.execute(_rollup_table_sql(table))
    missing_hists = [lead for lead in HIST_LEADS if not _table_exists(con, hist_table(lead))]
    for lead in HIST_LEADS:
        con.execute(_hist_table_sql(lead))
    for sql in TRIGGER_SQL:
        con.execute(sql)
    if missing:
        rebuild_rollups(con)
    if missing_hists:
        rebuild_histograms(con, missing_hists)
    if indexes:
        for sql in INDEX_SQL:
            con.execute(sql)
    if found is None or found < SCHEMA_VERSION:
        con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


def _table_exists(con: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return con.execute(sql, (name,)).fetchone() is not None


def rebuild_rollups(con: sqlite3.Connection) -> None:
    """Recompute the rollups from every row of `usage`."""
    dims = ", ".join(f"ifnull({d}, '')" for d in _ROLLUP_DIMS)
    for table, seconds in _ROLLUPS.values():
        con.execute(f"DELETE FROM {table}")
        con.execute(
            f"INSERT INTO {table} (period, {', '.join(_ROLLUP_DIMS)}, {', '.join(_ROLLUP_SUMS)}) "
            f"SELECT CAST(ts / {seconds} AS INTEGER), {dims}, {_RAW_SUMS} FROM usage "
            f"GROUP BY 1, 2, 3, 4, 5, 6"
        )


def rebuild_histograms(con: sqlite3.Connection, leads: Sequence[Lead] = HIST_LEADS) -> None:
    """Recompute the histogram tables of `leads` from every row of `usage`."""
    for lead in leads:
        table = hist_table(lead)
        con.execute(f"DELETE FROM {table}")
        values = "".join(f"ifnull({_LEAD_EXPR[c].format(r='usage')}, ''), " for c in lead)
        group = ", ".join(str(i) for i in range(1, len(lead) + 4))
        for metric in METRICS:
            con.execute(
                f"INSERT INTO {table} (day, {''.join(f'{c}, ' for c in lead)}metric, bucket, n) "
                f"SELECT CAST(ts / 86400 AS INTEGER), {values}{_METRIC_CODE[metric]}, "
                f"{metric}_bucket, count(*) FROM usage WHERE {metric}_bucket IS NOT NULL "
                f"GROUP BY {group}"
            )


# ----------------------------------------------------------------------------------------------
# Queries
# ----------------------------------------------------------------------------------------------

_RAW_SUMS = (
    "count(*), ifnull(sum(outcome = 'error'), 0), total(input_tokens), total(output_tokens), "
    "total(reasoning_tokens), total(cached_tokens), total(cost_usd), count(cost_usd), "
    "count(latency_ms), count(ttft_ms)"
)
_ROLLUP_SUM_SQL = ", ".join(f"sum({c})" for c in _ROLLUP_SUMS)


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

    def values(self) -> list[Any]:
        return [getattr(self, c) for c in _ROLLUP_SUMS]

    def count(self, metric: Metric) -> int:
        return self.latency_n if metric == "latency_ms" else self.ttft_n


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


@dataclass(frozen=True, slots=True)
class _Sel:
    """Rows to sum or rank: the user's filters, and `model_key` (an exact model-used-else-
    requested match, for the reference counts that prove a histogram exact)."""

    project: str | None = None
    backend: str | None = None
    model: str | None = None
    model_key: str | None = None
    session: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def of(cls, f: UsageFilters) -> _Sel:
        return cls(f.project, f.backend, f.model, None, f.session, f.since, f.until)


def _names_where(sel: _Sel, w: _Where, *, raw: bool) -> None:
    if sel.project is not None:
        w.add("project = ?", sel.project)
    if sel.backend is not None:
        w.add("backend = ?", sel.backend)
    if sel.model is not None:
        w.add("(model_used = ? OR model_requested = ?)", sel.model, sel.model)
    if sel.model_key is not None:
        w.add(f"{'model_key' if raw else _ROLLUP_GROUP['model']} = ?", sel.model_key)
    if raw and sel.session is not None:
        w.add("session_id = ?", sel.session)


def _raw_where(sel: _Sel, since: float | None, until: float | None) -> _Where:
    w = _Where()
    _names_where(sel, w, raw=True)
    if since is not None:
        w.add("ts >= ?", since)
    if until is not None:
        w.add("ts < ?", until)
    return w


@dataclass(frozen=True, slots=True)
class _Span:
    """A piece of the time range: raw rows [lo, hi) in seconds, or rollup periods [lo, hi)."""

    kind: Literal["raw", "hour", "day"]
    lo: float | None
    hi: float | None


def _spans(since: float | None, until: float | None) -> list[_Span]:
    """Cover [since, until) with whole days, then whole hours, then raw rows at the edges."""
    h_lo = math.ceil(since / 3600) if since is not None else None
    h_hi = math.floor(until / 3600) if until is not None else None
    if h_lo is not None and h_hi is not None and h_lo >= h_hi:
        return [_Span("raw", since, until)]  # within one hour, or empty
    spans = []
    if since is not None and h_lo is not None and since < h_lo * 3600:
        spans.append(_Span("raw", since, h_lo * 3600.0))
    if until is not None and h_hi is not None and h_hi * 3600 < until:
        spans.append(_Span("raw", h_hi * 3600.0, until))
    d_lo = -(-h_lo // 24) if h_lo is not None else None
    d_hi = h_hi // 24 if h_hi is not None else None
    if d_lo is not None and d_hi is not None and d_lo >= d_hi:
        return [*spans, _Span("hour", h_lo, h_hi)]
    if h_lo is not None and d_lo is not None and h_lo < d_lo * 24:
        spans.append(_Span("hour", h_lo, d_lo * 24))
    if h_hi is not None and d_hi is not None and d_hi * 24 < h_hi:
        spans.append(_Span("hour", d_hi * 24, h_hi))
    return [*spans, _Span("day", d_lo, d_hi)]


def _rank(n: int, p: int) -> int:
    """Nearest rank (1-based) of the p-th percentile among n sorted values."""
    return max(1, (n * p + 99) // 100)


GroupValue = str | int | None
_TOTAL = "__total__"
Percentiles = dict[str, float | None]


def _no_values(metric: Metric) -> Percentiles:
    return {f"{metric}_p{p}": None for p in PERCENTILES}


def _histogram_percentiles(metric: Metric, counts: Mapping[int, int]) -> Percentiles:
    """Nearest-rank percentiles of a histogram (bucket -> count), each its bucket's middle."""
    total = sum(counts.values())
    if total <= 0:
        return _no_values(metric)
    ordered = sorted(b for b, c in counts.items() if c)
    out: Percentiles = {}
    for p in PERCENTILES:
        rank, seen = _rank(total, p), 0
        for bucket in ordered:
            seen += counts[bucket]
            if seen >= rank:
                out[f"{metric}_p{p}"] = bucket_value(bucket)
                break
    return out


class _Reader:
    """The queries of one `stats` or `recent` call, on one connection and one snapshot."""

    # Percentiles are exact (the filtered rows sorted) when sorting reads at most this many rows
    # through an index: about 2 us a row (bench/usage.py); else they come from the histograms.
    EXACT_ROWS = 20_000

    def __init__(self, con: sqlite3.Connection, filters: UsageFilters) -> None:
        self.con = con
        self.f = filters
        self.sel = _Sel.of(filters)
        self._references: dict[tuple[_Sel, GroupBy | None], dict[GroupValue, _Sums]] = {}
        self._sort: bool | None = None

    # -- sums -----------------------------------------------------------------------------

    def sums(self, sel: _Sel, group: GroupBy | None) -> dict[GroupValue, _Sums]:
        """Per group (or under the key None) sums of the rows `sel` selects."""
        out: dict[GroupValue, _Sums] = {}
        if sel.session is not None:
            spans = [_Span("raw", sel.since, sel.until)]
        else:
            spans = _spans(sel.since, sel.until)
        for span in spans:
            for row in self._span_sums(sel, group, span):
                if row[1]:
                    out.setdefault(row[0], _Sums()).add(row[1:])
        return out

    def _span_sums(self, sel: _Sel, group: GroupBy | None, span: _Span) -> list[Any]:
        if span.kind == "raw":
            w = _raw_where(sel, span.lo, span.hi)
            key = _RAW_GROUP[group] if group else "NULL"
            sql = f"SELECT {key}, {_RAW_SUMS} FROM usage WHERE {w.sql()} GROUP BY 1"
            return self.con.execute(sql, w.params).fetchall()
        table, _ = _ROLLUPS[span.kind]
        w = _Where()
        _names_where(sel, w, raw=False)
        if span.lo is not None:
            w.add("period >= ?", int(span.lo))
        if span.hi is not None:
            w.add("period < ?", int(span.hi))
        if group == "day":
            key = "period / 24" if span.kind == "hour" else "period"
        else:
            key = _ROLLUP_GROUP[group] if group else "NULL"
        sql = f"SELECT {key}, {_ROLLUP_SUM_SQL} FROM {table} WHERE {w.sql()} GROUP BY 1"
        return self.con.execute(sql, w.params).fetchall()

    # -- percentiles: exact by sorting few rows, else from the histogram of a lead -----------

    def _sorting_is_cheap(self) -> bool:
        """Whether sorting the filtered rows reads few rows: a session's (its index), or those
        of the time range (the ts index) or of a project in it (the project index) number at
        most `EXACT_ROWS`."""
        if self._sort is None:
            f = self.f
            scans = [_Sel(since=f.since, until=f.until)]
            if f.project is not None:
                scans.append(_Sel(project=f.project, since=f.since, until=f.until))
            self._sort = f.session is not None or any(
                sum(s.requests for s in self._cached_sums(sel, None).values()) <= self.EXACT_ROWS
                for sel in scans
            )
        return self._sort

    def _cached_sums(self, sel: _Sel, group: GroupBy | None) -> dict[GroupValue, _Sums]:
        """`sums`, once per selection and group in this call."""
        key = (sel, group)
        if key not in self._references:
            self._references[key] = self.sums(sel, group)
        return self._references[key]

    def _equalities(self) -> dict[str, str]:
        """Raw column -> value of the filters a histogram's lead can match."""
        f = self.f
        found = {"backend": f.backend, "project": f.project, "model_key": f.model}
        return {c: v for c, v in found.items() if v is not None}

    def _reference(
        self,
        lead: Lead,
        values: Mapping[str, Any],
        group: GroupBy | None,
    ) -> dict[GroupValue, _Sums]:
        """Sums (per group) of exactly the rows a lead's histogram counts: rows in the time
        range whose lead columns equal `values` (the group's column takes each group's value)."""
        fixed = set(lead) - ({_RAW_GROUP[group]} if group else set())
        sel = _Sel(
            project=values["project"] if "project" in fixed else None,
            backend=values["backend"] if "backend" in fixed else None,
            model_key=values["model_key"] if "model_key" in fixed else None,
            since=self.f.since,
            until=self.f.until,
        )
        return self._cached_sums(sel, group)

    def _leads(self, group_column: str | None) -> list[tuple[Lead, bool]]:
        """Leads whose histograms may count exactly the filtered rows (of one group), each with
        whether they do by construction; otherwise equal counts prove it, which holds only
        when one set contains the other: the lead's rows contain the filtered ones when every
        lead column is a filter or the group (`within`), and are contained in them when the
        lead holds every filter, the model filter as `model_key` (`covering`)."""
        if self.f.session is not None:
            return []
        names = {c for c in ("backend", "project") if getattr(self.f, c) is not None}
        implied = names | ({group_column} if group_column else set())
        needed = implied | ({"model_key"} if self.f.model else set())
        candidates = PERCENTILE_LEADS
        if group_column == "day":  # every histogram table counts per day: any lead, by day
            candidates = tuple(
                dict.fromkeys((*_hist_lead(lead), "day") for lead in PERCENTILE_LEADS)
            )
        leads = []
        for lead in candidates:
            columns = set(lead)
            if group_column is not None and group_column not in columns:
                continue
            within = columns <= implied
            covering = columns == needed and not (group_column == "model_key" and self.f.model)
            if within or covering:
                leads.append((lead, within and columns == needed and not self.f.model))
        return leads

    def totals_percentiles(self, total: _Sums) -> Percentiles:
        out: Percentiles = {}
        values: dict[str, Any] = self._equalities()
        for metric in METRICS:
            n = total.count(metric)
            if n == 0:
                out.update(_no_values(metric))
                continue
            lead = None if self._sorting_is_cheap() else self._exact_lead(metric, n, values)
            if lead is not None:
                out.update(self._histogram(metric, [(c, values[c]) for c in lead]))
            else:
                out.update(self._window(metric, None, None).get(None, _no_values(metric)))
        return out

    def _exact_lead(self, metric: Metric, n: int, values: Mapping[str, Any]) -> Lead | None:
        for lead, obvious in self._leads(None):
            if obvious:
                return lead
            found = self._reference(lead, values, None).get(None)
            if found is not None and found.count(metric) == n:
                return lead
        return None

    def group_percentiles(
        self, group: GroupBy, sums: Mapping[GroupValue, _Sums]
    ) -> dict[GroupValue, Percentiles]:
        out: dict[GroupValue, Percentiles] = {key: {} for key in sums}
        column = _RAW_GROUP[group]
        values: dict[str, Any] = self._equalities()
        leads = [] if self._sorting_is_cheap() else self._leads(column)
        for metric in METRICS:
            windows: list[GroupValue] = []
            for key, s in sums.items():
                n = s.count(metric)
                if n == 0:
                    out[key].update(_no_values(metric))
                    continue
                lead = self._group_lead(leads, group, key, metric, n, values)
                if lead is not None:
                    pairs = [(c, key if c == column else values[c]) for c in lead]
                    out[key].update(self._histogram(metric, pairs))
                else:
                    windows.append(key)
            if windows:
                found = self._window(metric, column, windows)
                for key in windows:
                    out[key].update(found.get(key, _no_values(metric)))
        return out

    def _group_lead(
        self,
        leads: Sequence[tuple[Lead, bool]],
        group: GroupBy,
        key: GroupValue,
        metric: Metric,
        n: int,
        values: Mapping[str, Any],
    ) -> Lead | None:
        for lead, obvious in leads:
            if obvious:
                return lead
            found = self._reference(lead, values, group).get(key)
            if found is not None and found.count(metric) == n:
                return lead
        return None

    def _histogram(self, metric: Metric, lead: Sequence[tuple[str, Any]]) -> Percentiles:
        """Percentiles of the rows whose lead columns equal the given values, in the time
        range (split as the sums split it, `_spans`): whole UTC days from the lead's histogram
        table, the hours and raw edges around them from the rows' own buckets; each is the
        middle of its bucket."""
        counts: dict[int, int] = {}
        table = hist_table(tuple(c for c, _ in lead))
        for span in _spans(self.f.since, self.f.until):
            w = _Where()
            if span.kind == "day":
                for column, value in lead:
                    w.add(f"{column} = ?", "" if value is None else value)  # '' stands for NULL
                w.add("metric = ?", _METRIC_CODE[metric])
                source, bucket, count, period, scale = table, "bucket", "sum(n)", "day", 1.0
            else:
                for column, value in lead:
                    w.add(f"{column} IS ?", value)
                w.add(f"{metric}_bucket IS NOT NULL")
                source, bucket, count, period = "usage", f"{metric}_bucket", "count(*)", "ts"
                scale = 3600.0 if span.kind == "hour" else 1.0
            if span.lo is not None:
                w.add(f"{period} >= ?", span.lo * scale)
            if span.hi is not None:
                w.add(f"{period} < ?", span.hi * scale)
            sql = f"SELECT {bucket}, {count} FROM {source} WHERE {w.sql()} GROUP BY 1"
            for b, n in self.con.execute(sql, w.params):
                counts[b] = counts.get(b, 0) + n
        return _histogram_percentiles(metric, counts)

    def _window(
        self, metric: Metric, column: str | None, keys: Sequence[GroupValue] | None
    ) -> dict[GroupValue, Percentiles]:
        """Percentiles of the filtered rows (per group of `column`, only `keys`) in one
        window-function query: each group's rows sorted, the rows at the ranks kept."""
        w = _raw_where(self.sel, self.f.since, self.f.until)
        w.add(f"{metric} IS NOT NULL")
        if column is not None and keys is not None:
            # `+column`: the filters and the time range choose the index, not this list
            present = [k for k in keys if k is not None]
            alternatives = []
            if present:
                alternatives.append(f"+{column} IN ({', '.join('?' * len(present))})")
            if len(present) < len(keys):
                alternatives.append(f"+{column} IS NULL")
            w.add("(" + " OR ".join(alternatives) + ")", *present)
        key = column or "NULL"
        # `+`: no index can hand the rows over in this order, so sqlite reads them through the
        # filters' index and sorts them (rather than scanning a whole metric index to skip it)
        partition = f"PARTITION BY +{column}" if column else ""
        wanted = " OR ".join(f"rn = max(1, (cnt * {p} + 99) / 100)" for p in PERCENTILES)
        sql = (
            f"SELECT g, v, rn, cnt FROM (SELECT {key} AS g, {metric} AS v, "
            f"row_number() OVER ({partition} ORDER BY +{metric}) AS rn, "
            f"count(*) OVER ({partition}) AS cnt FROM usage WHERE {w.sql()}) WHERE {wanted}"
        )
        out: dict[GroupValue, Percentiles] = {}
        for g, v, rn, cnt in self.con.execute(sql, w.params):
            values = out.setdefault(g, {})
            for p in PERCENTILES:
                if rn == _rank(cnt, p):
                    values[f"{metric}_p{p}"] = v
        return out

    # -- recent -----------------------------------------------------------------------------

    def recent(self, limit: int) -> list[dict[str, Any]]:
        if self.f.model is not None and not self.sums(self.sel, None):
            return []  # nothing matches: spare the scan an unindexed model filter would make
        w = _raw_where(self.sel, self.f.since, self.f.until)
        columns = ", ".join(("id", *ROW_COLUMNS))
        sql = f"SELECT {columns} FROM usage WHERE {w.sql()} ORDER BY ts DESC, id DESC LIMIT ?"
        cursor = self.con.execute(sql, [*w.params, limit])
        names = [d[0] for d in cursor.description]
        return [_row_json(dict(zip(names, row, strict=True))) for row in cursor]


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
                    {
                        _labels(backend=b, model=m, outcome=o): n
                        for (b, m, o), n in self.requests.items()
                    },
                ),
                *self._counter(
                    "llm_proxy_tokens_total",
                    "Tokens by backend, model and direction (in includes cached, out reasoning).",
                    {
                        _labels(backend=b, model=m, direction=d): n
                        for (b, m, d), n in self.tokens.items()
                    },
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
            lines.append(
                f"{name}_bucket{_labels(backend=backend, model=model, le='+Inf')} {h.count}"
            )
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

    BATCH_MAX = 5000
    # Seconds rows may gather before a batch is written. Every row updates 3 indexes, 2 rollups
    # and 14 histogram counts, and a bigger batch dirties fewer pages per row (sqlite's CPU a
    # row: 130 µs alone, 25 µs in batches of 30, 20 µs of 250, 18 µs of 1,000; with schema 2's
    # 17 indexes: 243, 128, 55, 39): under load (the last batch held
    # `LOAD_ROWS` rows or more: 200 a second) rows gather for `BATCH_WAIT`, otherwise for
    # `QUIET_WAIT`, so a row of an interactive session is in the file at once. A flush (the
    # usage API's queries make one) waits for neither.
    BATCH_WAIT = 1.0
    QUIET_WAIT = 0.05
    LOAD_ROWS = 10
    CACHE_KIB = 32768  # page cache per connection (the writer's and each reader's)

    def __init__(self, path: str, *, store_content: bool = False) -> None:
        self.path = path
        self.store_content = store_content
        self.metrics = Metrics()
        self.written = 0  # rows committed by the writer
        self.failed = 0  # rows the writer could not insert (logged)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._hurry = threading.Event()  # set by a flush: write what is queued now
        self._last_batch = 0  # rows in the writer's last batch
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
        # the row's parameters are made here, not on the writer thread: the writer then holds
        # Python's GIL only briefly per batch, and the event loop's thread never waits for it
        self._queue.put(row_values(row))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every row recorded before this call is committed; False on timeout."""
        if not self._writer.is_alive():
            return self._queue.empty()
        barrier = _Barrier()
        self._queue.put(barrier)
        self._hurry.set()
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush, stop the writer and close every connection; later records are dropped."""
        if self._closed:
            return
        self._closed = True
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._hurry.set()
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
        con.execute(f"PRAGMA cache_size=-{self.CACHE_KIB}")
        # a multi-row INSERT keeps a statement journal (to undo just that statement): in memory,
        # not a temporary file created and deleted for every statement
        con.execute("PRAGMA temp_store=MEMORY")
        return con

    def _write_loop(self) -> None:
        con = self._connect()
        try:
            while True:
                items = self._take()
                rows = [x for x in items if type(x) is tuple]
                try:
                    if rows:
                        self._insert(con, rows)
                except Exception:  # the writer must outlive anything a batch does
                    self.failed += len(rows)
                    logger.exception("usage rows could not be written and are dropped")
                for item in items:
                    if isinstance(item, _Barrier):
                        item.done.set()
                if any(item is _STOP for item in items):
                    return
        finally:
            con.close()

    def _take(self) -> list[object]:
        """The next batch: wait for one item, let more gather briefly, then take what is queued.

        Gathering rows makes one transaction (and one thread wake-up) per batch instead of per
        row under load; a flush or close is served at once.
        """
        items = [self._queue.get()]
        if not isinstance(items[0], _Barrier) and items[0] is not _STOP:
            busy = self._last_batch >= self.LOAD_ROWS
            self._hurry.wait(self.BATCH_WAIT if busy else self.QUIET_WAIT)
        self._hurry.clear()
        while len(items) < self.BATCH_MAX and items[-1] is not _STOP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._last_batch = len(items)
        return items

    def _insert(self, con: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Commit `rows` in one transaction; retry a busy or failing file a few times, then
        drop the batch; a row the table refuses is dropped alone (the batch goes row by row)."""
        problem: sqlite3.Error | None = None
        for attempt in range(3):
            try:
                self._commit(con, rows)
                self.written += len(rows)
                return
            except sqlite3.OperationalError as exc:  # locked, busy, disk full: wait and retry
                problem = exc
                time.sleep(0.05 * (attempt + 1))
            except sqlite3.Error as exc:  # a row the table refuses
                if len(rows) > 1:
                    for row in rows:
                        self._insert(con, [row])
                    return
                problem = exc
                break
        self.failed += len(rows)
        logger.error("%d usage row(s) could not be written and are dropped: %s", len(rows), problem)

    @staticmethod
    def _commit(con: sqlite3.Connection, values: list[tuple[Any, ...]]) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            step = BATCH_ROWS_PER_STATEMENT
            for start in range(0, len(values), step):
                part = values[start : start + step]
                if len(part) == 1:
                    con.execute(INSERT_SQL, part[0])
                else:
                    con.execute(batch_insert_sql(len(part)), list(chain.from_iterable(part)))
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
            grouped = reader.sums(reader.sel, group)
            total = _Sums()
            for s in grouped.values():
                total.add(s.values())
            pct: dict[GroupValue, Percentiles] = {_TOTAL: reader.totals_percentiles(total)}
            if group is not None:
                pct.update(reader.group_percentiles(group, grouped))
        groups = (
            [
                {"key": _group_label(group, key), **_summary(s, pct.get(key, {}))}
                for key, s in grouped.items()
            ]
            if group
            else []
        )
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
