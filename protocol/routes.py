"""The failover route store: routes by name, from commands and `mitm.conf`, kept in sqlite.

This module owns the process-wide set of `protocol.failover.Route`s, their validation (name,
policy, `backend:model` elements) and their persistence in table `failover_routes` of the
proxy's sqlite file (the usage rows' file; WAL, its own connections, a busy timeout).

- Reads (`get`, `names`) take no lock: every change builds a new mapping and swaps it in.
- Changes return at once: they update the mapping and queue a write; ONE background thread
  commits queued writes (the caller, the proxy's event loop, never waits for disk). `flush`
  waits for them (tests, shutdown).
- Routes from `mitm.conf` (`load_config`) are kept in memory only, under any stored route of
  the same name. A command that changes a config route stores it, so the changed route wins
  at the next start; a deleted config route comes back from the config at the next start.

The command layer (`protocol.command_handlers`) checks what needs the proxy's configuration
(backends, model lists) before calling here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from protocol.failover import POLICIES, Policy, Route

log = logging.getLogger(__name__)

NAME_RULES = "1-64 characters: letters, digits, '-', '_' or '.'"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONFIG_KEYS = frozenset({"policy", "elements"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS failover_routes (
    name TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    elements TEXT NOT NULL,
    updated REAL NOT NULL
)
"""
_UPSERT = (
    "INSERT INTO failover_routes (name, policy, elements, updated) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET policy = excluded.policy, elements = excluded.elements, "
    "updated = excluded.updated"
)
_DELETE = "DELETE FROM failover_routes WHERE name = ?"


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    """`name` when it is a valid route name, else ValueError (names are case-sensitive)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"route name must be {NAME_RULES}, got {name!r}")
    return name


def check_policy(policy: str) -> Policy:
    """`policy` when it is one of `POLICIES` (any case), else ValueError."""
    word = policy.strip().lower() if isinstance(policy, str) else policy
    if word not in POLICIES:
        raise ValueError(f"policy must be one of {'|'.join(POLICIES)}, got {policy!r}")
    return cast(Policy, word)


def check_element(element: str) -> str:
    """`backend:model` normalised (spaces trimmed, backend in lower case), else ValueError.

    Whether the backend is configured is not checked here: the command layer does that, and a
    route from the config may name a backend that is configured later.
    """
    if not isinstance(element, str):
        raise ValueError(f"a route element must be a 'backend:model' string, got {element!r}")
    backend, sep, model = element.strip().partition(":")
    backend, model = backend.strip().lower(), model.strip()
    if not sep or not backend or not model:
        raise ValueError(f"a route element must be 'backend:model', got {element!r}")
    return f"{backend}:{model}"


def _route(name: str, policy: str, elements: Iterable[str]) -> Route:
    return Route(check_name(name), check_policy(policy), [check_element(e) for e in elements])


def _copy(route: Route) -> Route:
    return Route(route.name, route.policy, list(route.elements))


def _config_route(name: Any, spec: Any) -> Route:
    """One `mitm.conf` route, or ValueError naming it."""
    try:
        if isinstance(name, str):
            check_name(name)
        else:
            raise ValueError(f"route name must be {NAME_RULES}, got {name!r}")
        if isinstance(spec, list | tuple):
            return _route(name, "m", spec)
        if not isinstance(spec, Mapping):
            raise ValueError(
                "expected {policy: k|m|km|mk, elements: [backend:model, ...]} or a list of "
                f"elements, got {type(spec).__name__}"
            )
        unknown = sorted(str(k) for k in spec if k not in _CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)} (keys: policy, elements)")
        elements = spec.get("elements") or []
        if not isinstance(elements, list | tuple):
            raise ValueError(f"elements must be a list of backend:model, got {elements!r}")
        return _route(name, spec.get("policy") or "m", elements)
    except ValueError as e:
        raise ValueError(f"failover route {name!r} in the config: {e}") from None


# ------------------------------------------------------------------------------------------------
# The writer's queue items
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Upsert:
    name: str
    policy: str
    elements: str  # JSON list
    updated: float


@dataclass(frozen=True, slots=True)
class _Delete:
    name: str


class _Barrier:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()
_Write = _Upsert | _Delete


def _connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    con.execute("PRAGMA busy_timeout=5000")  # the usage store writes the same file
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


# ------------------------------------------------------------------------------------------------
# The store
# ------------------------------------------------------------------------------------------------


class RouteStore:
    """Failover routes by name; with a path, persisted in that sqlite file by a writer thread."""

    RETRIES = 3  # attempts at a batch the file refuses (busy, locked), then it is dropped

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.failed = 0  # writes the writer could not commit (logged)
        self._routes: Mapping[str, Route] = MappingProxyType({})
        self._from_config: frozenset[str] = frozenset()  # in memory only, not stored
        self._lock = threading.Lock()  # serialises changes (never held for disk work)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._writer: threading.Thread | None = None
        if path is None:
            return
        self._routes = MappingProxyType(self._load(path))
        self._writer = threading.Thread(target=self._write_loop, name="routes-writer", daemon=True)
        self._writer.start()

    # -- reading ------------------------------------------------------------------------------

    def get(self, name: str) -> Route | None:
        """The route named exactly `name` (a copy), or None."""
        route = self._routes.get(name)
        return _copy(route) if route is not None else None

    def names(self) -> list[str]:
        """Every route's name, sorted."""
        return sorted(self._routes)

    def routes(self) -> list[Route]:
        """Every route (copies), sorted by name: one consistent view."""
        current = self._routes
        return [_copy(current[name]) for name in sorted(current)]

    # -- changing -----------------------------------------------------------------------------

    def create(self, name: str, policy: str) -> Route:
        """A new route without elements; ValueError when the name or policy is bad or taken."""
        route = _route(name, policy, ())
        with self._lock:
            if name in self._routes:
                raise ValueError(f"failover route '{name}' already exists")
            return self._put(route)

    def append(self, name: str, elements: Iterable[str]) -> Route:
        """The route with `elements` added at its end (KeyError: no such route)."""
        added = [check_element(e) for e in elements]
        with self._lock:
            route = self._existing(name)
            return self._put(Route(name, route.policy, [*route.elements, *added]))

    def prepend(self, name: str, elements: Iterable[str]) -> Route:
        """The route with `elements`, in their order, put before its own."""
        added = [check_element(e) for e in elements]
        with self._lock:
            route = self._existing(name)
            return self._put(Route(name, route.policy, [*added, *route.elements]))

    def clear(self, name: str) -> Route:
        """The route with no elements left (its policy kept)."""
        with self._lock:
            route = self._existing(name)
            return self._put(Route(name, route.policy, []))

    def delete(self, name: str) -> Route:
        """Remove the route; returns it as it was."""
        with self._lock:
            route = self._existing(name)
            routes = dict(self._routes)
            del routes[name]
            self._routes = MappingProxyType(routes)
            self._from_config -= {name}
            self._enqueue(_Delete(name))
            return _copy(route)

    def load_config(self, routes: Mapping[str, Any] | None) -> None:
        """Take the routes of `mitm.conf` (replacing those of an earlier call).

        `{name: {"policy": "km", "elements": ["openai:gpt-4o", ...]}}`, or a list of elements
        for policy "m". A stored route (changed by commands) keeps precedence. Everything is
        checked before anything is taken: ValueError naming the first bad route.
        """
        if routes is None:
            routes = {}
        if not isinstance(routes, Mapping):
            raise ValueError(
                "failover routes in the config must be a mapping of name to route, "
                f"got {type(routes).__name__}"
            )
        parsed = [_config_route(name, spec) for name, spec in routes.items()]
        with self._lock:
            current = dict(self._routes)
            for stale in self._from_config:
                current.pop(stale, None)
            taken: set[str] = set()
            for route in parsed:
                if route.name not in current:
                    current[route.name] = route
                    taken.add(route.name)
            self._routes = MappingProxyType(current)
            self._from_config = frozenset(taken)
        log.debug(
            "failover routes from the config: %d taken, %d stored kept",
            len(taken),
            len(parsed) - len(taken),
        )

    def _existing(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            raise KeyError(f"no failover route '{name}'")
        return route

    def _put(self, route: Route) -> Route:
        """Swap in a mapping holding `route` and queue its write (the lock is held)."""
        self._routes = MappingProxyType({**self._routes, route.name: route})
        self._from_config -= {route.name}
        self._enqueue(_Upsert(route.name, route.policy, json.dumps(route.elements), time.time()))
        return _copy(route)

    def _enqueue(self, write: _Write) -> None:
        if self._writer is None:
            return
        if self._closed:
            log.warning("failover route '%s' changed after close: not stored", write.name)
            return
        self._queue.put(write)

    # -- the file -----------------------------------------------------------------------------

    @staticmethod
    def _load(path: str) -> dict[str, Route]:
        con = _connect(path)
        try:
            con.execute(SCHEMA)
            rows = con.execute(
                "SELECT name, policy, elements FROM failover_routes ORDER BY name"
            ).fetchall()
        finally:
            con.close()
        routes: dict[str, Route] = {}
        for name, policy, elements in rows:
            try:
                listed = json.loads(elements)
                if not isinstance(listed, list):
                    raise ValueError("elements are not a JSON list")
                routes[name] = _route(name, policy, listed)
            except (ValueError, TypeError) as e:
                log.warning("stored failover route %r skipped: %s", name, e)
        return routes

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every change made before this call is on disk; False on timeout."""
        if self._writer is None:
            return True
        if not self._writer.is_alive():
            return self._queue.empty()
        barrier = _Barrier()
        self._queue.put(barrier)
        return barrier.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer; later changes stay in memory only."""
        with self._lock:  # no change slips in behind the stop
            if self._closed:
                return
            self._closed = True
            if self._writer is not None:
                self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join(timeout)

    def __enter__(self) -> RouteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_loop(self) -> None:
        assert self.path is not None
        con = _connect(self.path)
        try:
            while True:
                items = self._take()
                writes = [item for item in items if isinstance(item, _Upsert | _Delete)]
                if writes:
                    self._commit_batch(con, writes)
                for item in items:
                    if isinstance(item, _Barrier):
                        item.done.set()
                if any(item is _STOP for item in items):
                    return
        finally:
            with contextlib.suppress(sqlite3.Error):
                con.close()

    def _take(self) -> list[object]:
        """Everything queued, waiting for the first item."""
        items = [self._queue.get()]
        while items[-1] is not _STOP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _commit_batch(self, con: sqlite3.Connection, writes: list[_Write]) -> None:
        """Commit the last write of each route in `writes`; retry a busy file, then drop."""
        last: dict[str, _Write] = {}
        for write in writes:
            last.pop(write.name, None)
            last[write.name] = write
        problem: Exception | None = None
        for attempt in range(self.RETRIES):
            try:
                self._write(con, list(last.values()))
                return
            except sqlite3.OperationalError as e:  # busy, locked, disk full: wait and retry
                problem = e
                time.sleep(0.05 * (attempt + 1))
            except Exception as e:  # the writer must outlive anything a batch does
                problem = e
                break
        self.failed += len(last)
        log.error("%d failover route change(s) could not be stored: %s", len(last), problem)

    @staticmethod
    def _write(con: sqlite3.Connection, writes: list[_Write]) -> None:
        """One transaction holding `writes` (the writer thread's only disk work)."""
        con.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                if isinstance(write, _Upsert):
                    con.execute(_UPSERT, (write.name, write.policy, write.elements, write.updated))
                else:
                    con.execute(_DELETE, (write.name,))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
