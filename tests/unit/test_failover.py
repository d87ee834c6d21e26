"""Failover plans: each policy's attempt order, skipped elements, failover statuses, messages."""

from __future__ import annotations

import logging

import pytest

from protocol.backends import KINDS, ApiKey, Backend
from protocol.exchange import Attempt
from protocol.failover import (
    FAILOVER_STATUSES,
    Route,
    describe_failures,
    failure_text,
    plan_attempts,
    should_fail_over,
    skipped_elements,
)
from protocol.keypool import KeyPool


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def backend(name: str, n_keys: int) -> Backend:
    prefix = KINDS[name].env_prefix
    keys = [ApiKey(f"{prefix}_API_KEY_{i}", f"secret-{name}-{i}") for i in range(1, n_keys + 1)]
    return Backend(KINDS[name], KINDS[name].default_base_url, keys)


Setup = tuple[dict[str, Backend], dict[str, KeyPool]]


@pytest.fixture
def setup() -> Setup:
    """gemini with 3 keys, openai with 2; anthropic not configured."""
    backends = {"gemini": backend("gemini", 3), "openai": backend("openai", 2)}
    clock = FakeClock()
    pools = {name: KeyPool(b.keys, clock=clock) for name, b in backends.items()}
    return backends, pools


def order(attempts: list[Attempt]) -> list[tuple[str, str | None]]:
    return [(f"{a.backend}:{a.model}", a.key_id) for a in attempts]


GEM, OAI = "gemini:gemini-2.5-pro", "openai:gpt-4o"
G1, G2, G3 = "GEMINI_API_KEY_1", "GEMINI_API_KEY_2", "GEMINI_API_KEY_3"
O1, O2 = "OPENAI_API_KEY_1", "OPENAI_API_KEY_2"


def test_policy_k_first_element_all_its_keys(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "k", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G1), (GEM, G2), (GEM, G3)]


def test_policy_m_each_element_one_key(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "m", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G1), (OAI, O1)]
    # the next request's plan uses each pool's next key
    plan = plan_attempts(Route("r", "m", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G2), (OAI, O2)]


def test_policy_km_each_element_all_keys(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "km", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G1), (GEM, G2), (GEM, G3), (OAI, O1), (OAI, O2)]


def test_policy_mk_key_index_outer_element_inner(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "mk", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G1), (OAI, O1), (GEM, G2), (OAI, O2), (GEM, G3)]


def test_plans_rotate_the_starting_key(setup: Setup) -> None:
    backends, pools = setup
    plan_attempts(Route("r", "km", [GEM, OAI]), pools, backends)
    plan = plan_attempts(Route("r", "km", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G2), (GEM, G3), (GEM, G1), (OAI, O2), (OAI, O1)]


def test_plans_leave_out_cooling_and_disabled_keys(setup: Setup) -> None:
    backends, pools = setup
    pools["gemini"].cooldown(G2, "gemini-2.5-pro", 60)
    pools["gemini"].cooldown(G3, "other-model", 60)  # other model: still usable here
    pools["openai"].disable(O1)
    plan = plan_attempts(Route("r", "mk", [GEM, OAI]), pools, backends)
    assert order(plan) == [(GEM, G1), (OAI, O2), (GEM, G3)]


def test_element_with_no_usable_key_contributes_nothing(setup: Setup) -> None:
    backends, pools = setup
    pools["gemini"].cooldown(G1, None, 60)
    pools["gemini"].cooldown(G2, None, 60)
    pools["gemini"].disable(G3)
    assert order(plan_attempts(Route("r", "m", [GEM, OAI]), pools, backends)) == [(OAI, O1)]
    assert plan_attempts(Route("r", "k", [GEM, OAI]), pools, backends) == []


def test_unconfigured_elements_are_skipped(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    backends, pools = setup
    route = Route("r", "km", ["anthropic:claude-sonnet-4", GEM, "nosuch:x", "openai:", OAI])
    with caplog.at_level(logging.DEBUG, logger="protocol.failover"):
        plan = plan_attempts(route, pools, backends)
    assert order(plan) == [(GEM, G1), (GEM, G2), (GEM, G3), (OAI, O1), (OAI, O2)]
    assert skipped_elements(route, backends) == ["anthropic:claude-sonnet-4", "nosuch:x", "openai:"]
    assert sum("skipping" in r.getMessage() for r in caplog.records) == 3


def test_policy_k_uses_the_first_configured_element(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "k", ["anthropic:claude", OAI, GEM]), pools, backends)
    assert order(plan) == [(OAI, O1), (OAI, O2)]


def test_bare_backend_element_takes_the_requested_model(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "m", ["openai", GEM]), pools, backends, model="gpt-4o-mini")
    assert order(plan) == [("openai:gpt-4o-mini", O1), (GEM, G1)]


def test_model_names_may_hold_colons(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "m", ["openai:ft:gpt-4o:org"]), pools, backends)
    assert order(plan) == [("openai:ft:gpt-4o:org", O1)]


def test_backend_without_keys_gets_one_keyless_attempt() -> None:
    local = Backend(KINDS["openai"], "http://127.0.0.1:8080/v1", [])
    gem = backend("gemini", 2)
    backends = {"openai": local, "gemini": gem}
    pools = {"gemini": KeyPool(gem.keys)}  # no pool for openai: one is made
    plan = plan_attempts(Route("r", "mk", ["openai:llama", GEM]), pools, backends)
    assert order(plan) == [("openai:llama", None), (GEM, G1), (GEM, G2)]


def test_attempts_carry_key_ids_only(setup: Setup) -> None:
    backends, pools = setup
    plan = plan_attempts(Route("r", "km", [GEM, OAI]), pools, backends)
    assert all("secret" not in repr(a) for a in plan)


@pytest.mark.parametrize("status", [None, 401, 403, 408, 409, 429, 500, 502, 503, 504, 529])
def test_fails_over_on(status: int | None) -> None:
    assert should_fail_over(status)


@pytest.mark.parametrize("status", [200, 400, 404, 413, 422, 501])
def test_does_not_fail_over_on(status: int) -> None:
    assert not should_fail_over(status)


def test_failover_statuses() -> None:
    assert frozenset({408, 409, 429, 500, 502, 503, 504, 529}) == FAILOVER_STATUSES


def test_failure_text() -> None:
    assert failure_text(429) == "429 Too Many Requests"
    assert failure_text(529) == "529 overloaded"
    assert failure_text(500, "upstream said no") == "500 upstream said no"
    assert failure_text(None) == "connection error"
    assert failure_text(None, "timeout after 120 s") == "timeout after 120 s"
    assert failure_text(599) == "599"


def test_describe_failures() -> None:
    attempts = [
        Attempt("gemini", "gemini-2.5-pro", G1, "429 Too Many Requests"),
        Attempt("openai", "gpt-4o", O1, "connection error"),
        Attempt("openai", "llama", None, None),
    ]
    assert describe_failures(attempts) == (
        "all 3 attempts failed: gemini:gemini-2.5-pro (GEMINI_API_KEY_1): 429 Too Many Requests; "
        "openai:gpt-4o (OPENAI_API_KEY_1): connection error; openai:llama (no key): not tried"
    )
    assert describe_failures(attempts[:1]).startswith("all 1 attempt failed: gemini:")
    assert "no attempt" in describe_failures([])
