"""End-to-end fixtures: the strict test upstream and the real proxy started as the README does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import clients
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


def settle(upstream: Upstream, backends: tuple[str, ...] = BACKENDS) -> None:
    """Let a freshly started proxy fetch its model lists, then forget those requests.

    Waits for each backend's own list request (not just any four requests: a request left over
    from a proxy of an earlier test must not end the wait early, or the new proxy's lists would
    arrive in the middle of the next test)."""
    deadline = time.monotonic() + 5
    with contextlib.suppress(AssertionError):
        for backend in backends:
            left = max(0.0, deadline - time.monotonic())
            upstream.wait_for_requests(1, timeout=left, backend=backend)
    upstream.reset()


@contextlib.contextmanager
def running_proxy(
    upstream: Upstream,
    confdir: Path,
    *,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    proxy_key: bool = True,
    **kwargs: Any,
) -> Iterator[ProxyProcess]:
    """A proxy (see `ProxyProcess` for `kwargs`) whose backends are the test upstream.

    `env` adds or overrides variables, `drop` removes some; `proxy_key` sets
    LLM_INTERACTIVE_PROXY_API_KEY. The proxy's start-up model-list requests are forgotten.
    """
    full = backend_env(upstream)
    if proxy_key:
        full["LLM_INTERACTIVE_PROXY_API_KEY"] = PROXY_KEY
    full.update(env or {})
    for name in drop:
        full.pop(name, None)
    upstream.reset()
    process = ProxyProcess(full, confdir=confdir, **kwargs)
    configured = tuple(
        b
        for b in BACKENDS
        if f"{b.upper()}_API_BASE_URL" in full
        and any(k.startswith(f"{b.upper()}_API_KEY") and v for k, v in full.items())
    )
    settle(upstream, configured)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with running_proxy(upstream, tmp_path_factory.mktemp("mitmproxy-conf")) as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        upstream: Upstream = request.getfixturevalue("upstream")
        upstream.reset()


def call(front: str, proxy: ProxyProcess, model: str, *, stream: bool) -> clients.Got:
    """One plain chat call (no tools) through `proxy` with the SDK of `front`."""
    if front == "openai":
        return clients.openai_call(
            clients.openai_client(proxy.url, PROXY_KEY), model, stream=stream, tools=False
        )
    if front == "anthropic":
        return clients.anthropic_call(
            clients.anthropic_client(proxy.url, PROXY_KEY), model, stream=stream, tools=False
        )
    return clients.gemini_call(
        clients.gemini_client(proxy.url, PROXY_KEY), model, stream=stream, tools=False
    )
