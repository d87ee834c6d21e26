"""End-to-end fixtures: the strict test upstream and the real proxy started as the README does."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Upstream

PROXY_KEY = "proxy-test-key"
BACKENDS = ("openai", "openrouter", "anthropic", "gemini")
UPSTREAM_KEYS = {b: f"upstream-{b}-key" for b in BACKENDS}
MODELS = {
    "openai": "gpt-4o",
    "openrouter": "anthropic/claude-3.5-sonnet",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-pro",
}


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    for backend, key in UPSTREAM_KEYS.items():
        server.keys[backend] = key
    server.start()
    try:
        yield server
    finally:
        server.stop()


def backend_env(upstream: Upstream) -> dict[str, str]:
    env: dict[str, str] = {}
    for backend in BACKENDS:
        prefix = backend.upper()
        env[f"{prefix}_API_KEY"] = UPSTREAM_KEYS[backend]
        env[f"{prefix}_API_BASE_URL"] = upstream.base_url(backend)
    return env


def settle(upstream: Upstream) -> None:
    """Let a freshly started proxy fetch its model lists, then forget those requests."""
    with contextlib.suppress(AssertionError):
        upstream.wait_for_requests(len(BACKENDS), timeout=5)
    upstream.reset()


@pytest.fixture(scope="session")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    env = backend_env(upstream)
    env["LLM_INTERACTIVE_PROXY_API_KEY"] = PROXY_KEY
    confdir: Path = tmp_path_factory.mktemp("mitmproxy-conf")
    process = ProxyProcess(env, confdir=confdir)
    settle(upstream)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def fresh_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        upstream: Upstream = request.getfixturevalue("upstream")
        upstream.reset()
