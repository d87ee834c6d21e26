"""Key pools through the real proxy: round-robin, cooldown after a 429, disabled after a 401.

(Resending the same request at once with the next key is the failover part of the routing issue
and not tested here: the client sees the 429, later requests avoid the cooling key.)
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, Upstream


@pytest.fixture
def pooled(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """A proxy with three OpenAI keys; the upstream takes any key and records which came."""
    keys = {"OPENAI_API_KEY_1": "key-one", "OPENAI_API_KEY_2": "key-two",
            "OPENAI_API_KEY_7": "key-seven"}
    saved = upstream.keys.get("openai")
    upstream.keys["openai"] = None  # any key
    try:
        with running_proxy(
            upstream, tmp_path_factory.mktemp("conf-keys"), env=keys, drop=("OPENAI_API_KEY",)
        ) as process:
            yield process
    finally:
        upstream.keys["openai"] = saved


def ask(proxy: ProxyProcess) -> str:
    return clients.openai_call(
        clients.openai_client(proxy.url, PROXY_KEY), "openai:gpt-4o", stream=False, tools=False
    ).text


def sent_keys(upstream: Upstream) -> list[str]:
    return [
        r.headers["authorization"].removeprefix("Bearer ")
        for r in upstream.requests
        if r.path.endswith("/chat/completions")
    ]


def test_keys_are_used_round_robin(pooled: ProxyProcess, upstream: Upstream) -> None:
    upstream.set_default(Reply(text="ok"))
    for _ in range(6):
        assert ask(pooled) == "ok"
    assert sent_keys(upstream) == ["key-one", "key-two", "key-seven"] * 2


def test_a_rate_limited_key_cools_down_and_all_cooling_answers_429(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(status=429, error_message="slow", headers={"retry-after": "40"}))
    with pytest.raises(openai.RateLimitError):
        ask(pooled)  # key-one: 429, cooling for 40 s
    upstream.set_default(Reply(text="ok"))
    ask(pooled)
    ask(pooled)
    ask(pooled)
    assert sent_keys(upstream) == ["key-one", "key-two", "key-seven", "key-two"]
    # cool the other two as well: the proxy answers 429 itself, with the earliest end
    upstream.enqueue(
        Reply(status=429, error_message="slow", headers={"retry-after": "20"}),
        Reply(status=429, error_message="slow", headers={"retry-after": "25"}),
    )
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            ask(pooled)
    before = len(upstream.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(pooled)
    assert len(upstream.requests) == before  # no upstream call
    retry_after = float(caught.value.response.headers["retry-after"])
    assert 15 <= retry_after <= 20
    assert "OPENAI_API_KEY_1" in str(caught.value) or "cooling" in str(caught.value)


def test_a_rejected_key_is_disabled(pooled: ProxyProcess, upstream: Upstream) -> None:
    upstream.enqueue(Reply(status=401, error_message="bad key"))
    with pytest.raises(openai.AuthenticationError):
        ask(pooled)
    upstream.set_default(Reply(text="ok"))
    for _ in range(4):
        ask(pooled)
    assert sent_keys(upstream) == ["key-one", "key-two", "key-seven", "key-two", "key-seven"]
    assert "key-one" not in pooled.log() and "OPENAI_API_KEY_1" in pooled.log()
