"""Intercept mode: an SDK with no base URL, through HTTPS_PROXY and mitmproxy's CA.

The client talks to the real API host name (api.openai.com); the intercepting listener
terminates TLS with the proxy's CA, the chain recognises the host, and routing sends the call
to the configured backend (here the test upstream), converted when the model names another one.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import MODELS, UPSTREAM_KEYS, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.upstream.script import Reply, Upstream


@pytest.fixture(scope="module")
def intercepting(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, Path]]:
    confdir = tmp_path_factory.mktemp("conf-intercept")
    with running_proxy(upstream, confdir, proxy_key=False, intercept=True) as process:
        yield process, confdir / "mitmproxy-ca-cert.pem"


def client(proxy: ProxyProcess, ca: Path) -> openai.OpenAI:
    """The OpenAI SDK as an agent that cannot change its base URL: only a proxy and a CA."""
    http = openai.DefaultHttpxClient(
        proxy=f"http://127.0.0.1:{proxy.intercept_port}",
        verify=ssl.create_default_context(cafile=str(ca)),
    )
    return openai.OpenAI(api_key="sk-the-clients-own-key", http_client=http, max_retries=0)


def test_intercepted_call_goes_through_the_chain(
    intercepting: tuple[ProxyProcess, Path], upstream: Upstream
) -> None:
    proxy, ca = intercepting
    upstream.enqueue(Reply(text="intercepted and answered"))
    r = client(proxy, ca).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content == "intercepted and answered"
    (rec,) = upstream.requests
    assert rec.backend == "openai" and rec.body["model"] == "gpt-4o"
    # a backend key configured for the proxy is used instead of the client's own
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_KEYS['openai']}"


def test_intercepted_call_rerouted_to_another_protocol(
    intercepting: tuple[ProxyProcess, Path], upstream: Upstream
) -> None:
    proxy, ca = intercepting
    upstream.enqueue(Reply(text="from claude, via api.openai.com", text_chunks=4))
    stream = client(proxy, ca).chat.completions.create(
        model=f"anthropic:{MODELS['anthropic']}",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "from claude, via api.openai.com"
    (rec,) = upstream.requests
    assert rec.backend == "anthropic" and rec.body["model"] == MODELS["anthropic"]
    assert "sk-the-clients-own-key" not in repr(rec.headers)


def test_ca_command_prints_the_ca_clients_trust(tmp_path: Path) -> None:
    """`llm-proxy ca` creates the CA when missing and prints the file to trust."""
    import subprocess

    from tests.e2e.proxy import BIN

    out = subprocess.run(
        [str(BIN / "llm-proxy"), "ca", "--set", f"confdir={tmp_path}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert out == str(tmp_path / "mitmproxy-ca-cert.pem")
    assert Path(out).read_text().startswith("-----BEGIN CERTIFICATE-----")
