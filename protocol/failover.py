"""Failover routes: which (backend, model, key) attempts a route makes, in which order.

A route is a name the client sends as its model, a policy and an ordered list of
`backend:model` elements. `plan_attempts` turns it into the list of `Attempt`s for one request,
from the key pools' state at that moment:

- `k`:  the first configured element only, each of its backend's usable keys in turn;
- `m`:  every element in order, one key each (the pool's next usable key);
- `km`: every element in order, all of its usable keys;
- `mk`: key index outer, element inner (key 0 of every element, then key 1 of every element...).

Each element's keys start at its pool's next key (the rotation advances once per element per
plan), so load spreads over the keys whatever the policy. A backend with no keys at all (a
local server) gets one attempt without a key. Elements whose backend is not configured, or that
name no model, are skipped: `plan_attempts` logs them at debug level and
`skipped_elements` lists them (for a message to the user). Attempts carry key ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal

from protocol.backends import ApiKey, Backend
from protocol.exchange import Attempt
from protocol.keypool import KeyPool

log = logging.getLogger(__name__)

Policy = Literal["k", "m", "km", "mk"]
POLICIES: tuple[Policy, ...] = ("k", "m", "km", "mk")

FAILOVER_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# the backend refused the key itself: the key is disabled and the next attempt is made
KEY_REJECTED_STATUSES = frozenset({401, 403})


@dataclass
class Route:
    name: str
    policy: Policy
    elements: list[str] = field(default_factory=list)  # "backend:model"


@dataclass(frozen=True, slots=True)
class _Element:
    backend: Backend
    model: str
    keys: list[ApiKey | None]  # None: a backend without keys, tried once without one


def split_element(element: str, model: str | None = None) -> tuple[str, str]:
    """`backend:model` -> (backend, model); the model may hold colons. A bare `backend` (or
    `backend:`) takes `model`, or "" when none is given."""
    backend, _, name = element.strip().partition(":")
    return backend, name or (model or "")


def skipped_elements(
    route: Route, backends: Mapping[str, Backend], model: str | None = None
) -> list[str]:
    """The route's elements that `plan_attempts` skips: backend not configured or no model."""
    skipped = []
    for element in route.elements:
        backend, name = split_element(element, model)
        if backend not in backends or not name:
            skipped.append(element)
    return skipped


def plan_attempts(
    route: Route,
    pools: Mapping[str, KeyPool],
    backends: Mapping[str, Backend],
    model: str | None = None,
) -> list[Attempt]:
    """The attempts of one request on `route`, in the policy's order.

    `model` fills elements that name a backend only. Keys cooling for an element's model or
    disabled are left out; an element with no usable key contributes no attempt (empty list:
    every key is cooling or disabled). A backend without a pool gets a fresh one over its keys.
    """
    elements = _elements(route, pools, backends, model)
    if route.policy == "mk":
        depth = max((len(e.keys) for e in elements), default=0)
        pairs = [(e, e.keys[i]) for i in range(depth) for e in elements if i < len(e.keys)]
    else:
        pairs = [(e, key) for e in elements for key in e.keys]
    return [Attempt(e.backend.name, e.model, key.key_id if key else None) for e, key in pairs]


def _elements(
    route: Route,
    pools: Mapping[str, KeyPool],
    backends: Mapping[str, Backend],
    model: str | None,
) -> list[_Element]:
    found: list[_Element] = []
    for element in route.elements:
        if route.policy == "k" and found:
            break
        name, element_model = split_element(element, model)
        backend = backends.get(name)
        if backend is None or not element_model:
            log.debug(
                "route %s: skipping %r (backend not configured or no model)", route.name, element
            )
            continue
        pool = pools.get(name)
        if pool is None:
            pool = KeyPool(backend.keys)
        keys = _keys_in_turn(pool, element_model, single=route.policy == "m")
        found.append(_Element(backend, element_model, keys))
    return found


def _keys_in_turn(pool: KeyPool, model: str, single: bool) -> list[ApiKey | None]:
    """The pool's usable keys from its next one on (advancing the rotation by one)."""
    if not pool.keys:
        return [None]
    first = pool.next_key(model)
    if first is None:
        return []
    if single:
        return [first]
    rest = [key for key in pool.usable(model) if key.key_id != first.key_id]
    return [first, *rest]


def should_fail_over(status: int | None) -> bool:
    """Whether a failed attempt moves on to the next one. None: connection error or timeout;
    401/403 too (`KEY_REJECTED_STATUSES`: the key is disabled, another may work)."""
    return status is None or status in FAILOVER_STATUSES or status in KEY_REJECTED_STATUSES


def failure_text(status: int | None, reason: str = "") -> str:
    """An attempt's `failure`: "429 Too Many Requests", "529 overloaded", "timeout"..."""
    if status is None:
        return reason or "connection error"
    if not reason:
        reason = "overloaded" if status == 529 else _phrase(status)
    return f"{status} {reason}".strip()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def describe_failures(attempts: list[Attempt]) -> str:
    """One message naming every attempt: `backend:model (key id): status reason`; ..."""
    parts = [
        f"{a.backend}:{a.model} ({a.key_id or 'no key'}): {a.failure or 'not tried'}"
        for a in attempts
    ]
    if not parts:
        return "no attempt was possible: no configured backend or usable key for this route"
    noun = "attempt" if len(parts) == 1 else "attempts"
    return f"all {len(parts)} {noun} failed: " + "; ".join(parts)
