"""Usage through the real proxy: one sqlite row per exchange, /usage endpoints, /metrics."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, UPSTREAM_KEYS, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, ToolCall, Upstream


@pytest.fixture(scope="module")
def usage_proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with running_proxy(upstream, tmp_path_factory.mktemp("conf-usage")) as process:
        yield process


def rows(proxy: ProxyProcess, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The usage rows once `count` of them are committed (the writer runs off the loop)."""
    deadline = time.monotonic() + timeout
    while True:
        if proxy.usage_db.exists():
            con = sqlite3.connect(proxy.usage_db)
            con.row_factory = sqlite3.Row
            try:
                found = [dict(r) for r in con.execute("SELECT * FROM usage ORDER BY id")]
            except sqlite3.OperationalError:
                found = []
            finally:
                con.close()
            if len(found) >= count or time.monotonic() > deadline:
                return found
        elif time.monotonic() > deadline:
            return []
        time.sleep(0.05)


def get(proxy: ProxyProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(proxy.url + path, params=params, headers={"x-api-key": PROXY_KEY}, timeout=10)


def test_every_exchange_writes_one_row(usage_proxy: ProxyProcess, upstream: Upstream) -> None:
    before = len(rows(usage_proxy, 0, timeout=0.5))
    oa = clients.openai_client(usage_proxy.url, PROXY_KEY)
    upstream.enqueue(Reply(text="plain answer", usage=(11, 7, 0, 0)))
    clients.openai_call(oa, "anthropic:claude-sonnet-4-5", stream=False, tools=False)
    upstream.enqueue(Reply(text="streamed", usage=(13, 5, 2, 4)))
    clients.anthropic_call(
        clients.anthropic_client(usage_proxy.url, PROXY_KEY), "gemini:gemini-2.5-pro",
        stream=True, tools=False,
    )
    upstream.enqueue(Reply(tool_calls=[ToolCall(name="get_weather", args={"city": "Oslo"})]))
    clients.gemini_call(
        clients.gemini_client(usage_proxy.url, PROXY_KEY), "openai:gpt-4o", stream=True, tools=True
    )
    upstream.enqueue(Reply(status=429, error_message="slow down", headers={"retry-after": "0"}))
    with pytest.raises(openai.RateLimitError):
        clients.openai_call(oa, "openai:gpt-4o", stream=False, tools=False)
    oa.with_options(default_headers={"x-session-id": "usage-s1"}).chat.completions.create(
        model="openai:gpt-4o", messages=[{"role": "user", "content": "!/set(project=alpha)"}]
    )
    upstream.enqueue(Reply(text="no usage reported", omit_usage=True))
    for _ in oa.with_options(default_headers={"x-session-id": "usage-s1"}).chat.completions.create(
        model="openai:gpt-4o", messages=[{"role": "user", "content": "count my tokens please"}],
        stream=True,
    ):
        pass

    got = rows(usage_proxy, before + 6)[before:]
    assert len(got) == 6
    plain, streamed, tool, limited, command, counted = got
    assert (plain["front"], plain["backend"], plain["model_used"]) == (
        "openai", "anthropic", "claude-sonnet-4-5",
    )
    assert plain["model_requested"] == "anthropic:claude-sonnet-4-5"
    assert plain["key_id"] == "ANTHROPIC_API_KEY" and plain["outcome"] == "ok"
    assert (plain["input_tokens"], plain["output_tokens"]) == (11, 7)
    assert plain["token_source"] == "upstream" and plain["status"] == 200
    assert plain["cost_usd"] is not None and plain["cost_usd"] > 0
    assert plain["latency_ms"] > 0 and not plain["stream"]
    assert (streamed["front"], streamed["backend"], streamed["stream"]) == ("anthropic", "gemini", 1)
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (13, 5)
    assert streamed["reasoning_tokens"] == 2 and streamed["cached_tokens"] == 4
    assert streamed["ttft_ms"] is not None and streamed["ttft_ms"] <= streamed["latency_ms"]
    assert (tool["front"], tool["backend"], tool["outcome"]) == ("gemini", "openai", "ok")
    assert (limited["outcome"], limited["status"]) == ("error", 429)
    assert "slow down" in limited["error"]
    assert (command["outcome"], command["backend"]) == ("local", None)
    assert command["session_id"] == "usage-s1"
    assert counted["token_source"] == "counted" and counted["project"] == "alpha"
    assert counted["input_tokens"] > 0 and counted["output_tokens"] > 0
    raw = usage_proxy.usage_db.read_bytes()
    for key in (*UPSTREAM_KEYS.values(), PROXY_KEY):
        assert key.encode() not in raw
    assert b"count my tokens" not in raw  # no prompt text unless usage_store_content


def test_usage_endpoints(usage_proxy: ProxyProcess, upstream: Upstream) -> None:
    before = len(rows(usage_proxy, 0, timeout=0.5))
    upstream.enqueue(Reply(text="x", usage=(3, 2, 0, 0)), Reply(text="y", usage=(5, 4, 0, 0)))
    oa = clients.openai_client(usage_proxy.url, PROXY_KEY)
    oa.chat.completions.create(model="gemini:g1", messages=[{"role": "user", "content": "a"}])
    oa.chat.completions.create(model="anthropic:c1", messages=[{"role": "user", "content": "b"}])
    total = len(rows(usage_proxy, before + 2))

    recent = get(usage_proxy, "/usage/recent", limit=2).json()
    assert [r["model_used"] for r in recent["rows"]] == ["c1", "g1"]  # newest first
    assert recent["limit"] == 2
    stats = get(usage_proxy, "/usage/stats", group_by="backend").json()
    assert stats["totals"]["requests"] == total
    by_backend = {g["key"]: g for g in stats["groups"]}
    assert by_backend["gemini"]["requests"] >= 1
    only = get(usage_proxy, "/usage/stats", backend="gemini", since="1h", model="g1").json()
    assert only["totals"]["requests"] == 1 and only["totals"]["input_tokens"] == 3
    assert only["totals"]["latency_ms_p50"] is not None

    assert get(usage_proxy, "/usage/stats", group_by="colour").status_code == 400
    assert get(usage_proxy, "/usage/recent", since="yesterday-ish").status_code == 400
    unauth = httpx.get(usage_proxy.url + "/usage/stats", timeout=10)
    assert unauth.status_code == 401

    metrics = get(usage_proxy, "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "# TYPE llm_proxy_requests_total counter" in text
    assert 'llm_proxy_requests_total{backend="gemini",model="g1",outcome="ok"} 1' in text
    assert "llm_proxy_request_latency_seconds_bucket" in text


def test_usage_command_reports_this_session(usage_proxy: ProxyProcess, upstream: Upstream) -> None:
    oa = clients.openai_client(usage_proxy.url, PROXY_KEY).with_options(
        default_headers={"x-session-id": "usage-cmd"}
    )
    upstream.enqueue(Reply(text="hi", usage=(21, 9, 0, 0)))
    oa.chat.completions.create(model="openai:gpt-4o", messages=[{"role": "user", "content": "a"}])
    reply = oa.chat.completions.create(
        model="openai:gpt-4o", messages=[{"role": "user", "content": "!/usage"}]
    ).choices[0].message.content or ""
    assert "session usage-cmd: 1 request (0 failed), 21 tokens in, 9 out" in reply


def test_the_live_line_keeps_a_running_total_per_session(
    usage_proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.set_default(Reply(text="ok", usage=(10, 5)))
    client = clients.openai_client(usage_proxy.url, PROXY_KEY)
    for _ in range(2):
        client.chat.completions.create(
            model="openai:gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-session-id": "running-total"},
        )
    deadline = time.monotonic() + 5
    while "session running-total: 2 req" not in usage_proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "session running-total: 2 req, in=20 out=10" in usage_proxy.log()


def test_an_x_project_header_labels_the_row(usage_proxy: ProxyProcess, upstream: Upstream) -> None:
    upstream.set_default(Reply(text="ok"))
    clients.openai_client(usage_proxy.url, PROXY_KEY).chat.completions.create(
        model="openai:gpt-4o-project",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-project": "billing-report"},
    )
    deadline = time.monotonic() + 5
    labelled: list[dict[str, Any]] = []
    while not labelled and time.monotonic() < deadline:
        labelled = [r for r in rows(usage_proxy, 1) if r["model_used"] == "gpt-4o-project"]
        time.sleep(0.05)
    assert [r["project"] for r in labelled] == ["billing-report"]
    assert "x-project" not in upstream.last().headers  # the proxy's own header stays here
