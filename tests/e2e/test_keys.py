"""Key pools through the real proxy: round-robin, a 429 resent at once with the next key and
that key cooling, a 401 disabling its key; 429 from the proxy when every key cools."""

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


def test_a_rate_limited_key_is_skipped_at_once_and_cools_down(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(status=429, error_message="slow", headers={"retry-after": "40"}))
    upstream.set_default(Reply(text="ok"))
    assert ask(pooled) == "ok"  # key-one: 429 (cooling for 40 s), resent at once with key-two
    assert sent_keys(upstream) == ["key-one", "key-two"]
    ask(pooled)
    ask(pooled)
    assert sent_keys(upstream)[2:] == ["key-seven", "key-two"]  # key-one is left out
    # the two others are limited too: the client gets 429 once no key is left ...
    upstream.enqueue(
        Reply(status=429, error_message="slow", headers={"retry-after": "20"}),
        Reply(status=429, error_message="slow", headers={"retry-after": "25"}),
    )
    with pytest.raises(openai.RateLimitError) as first:
        ask(pooled)
    assert "all 2 attempts failed" in str(first.value)
    assert "OPENAI_API_KEY_7" in str(first.value) and "OPENAI_API_KEY_2" in str(first.value)
    # ... and from then on the proxy answers 429 itself, with the earliest end of a cooldown
    before = len(upstream.requests)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(pooled)
    assert len(upstream.requests) == before  # no upstream call
    retry_after = float(caught.value.response.headers["retry-after"])
    assert 15 <= retry_after <= 20
    assert "cooling" in str(caught.value)


def test_a_rejected_key_is_disabled_and_the_next_key_answers(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(status=401, error_message="bad key"))
    upstream.set_default(Reply(text="ok"))
    assert ask(pooled) == "ok"
    for _ in range(3):
        ask(pooled)
    assert sent_keys(upstream) == ["key-one", "key-two", "key-seven", "key-two", "key-seven"]
    assert "key-one" not in pooled.log() and "OPENAI_API_KEY_1" in pooled.log()
