"""Intercept mode: an SDK with no base URL, through HTTPS_PROXY and mitmproxy's CA.

The client talks to the real API host name (api.openai.com); the intercepting listener
terminates TLS with the proxy's CA, the chain recognises the host, and routing sends the call
to the configured backend (here the test upstream), converted when the model names another one.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import MODELS, UPSTREAM_KEYS, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.e2e.tls import self_signed
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


def test_an_in_chat_command_reroutes_an_intercepted_client(
    intercepting: tuple[ProxyProcess, Path], upstream: Upstream
) -> None:
    proxy, ca = intercepting
    agent = client(proxy, ca)
    session = {"x-session-id": "intercepted-agent"}
    reply = agent.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"!/set(model=anthropic:{MODELS['anthropic']})"}],
        extra_headers=session,
    )
    assert "model set to" in (reply.choices[0].message.content or "")
    assert not upstream.requests  # answered by the proxy
    upstream.enqueue(Reply(text="claude answering an OpenAI agent"))
    r = agent.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=session
    )
    assert r.choices[0].message.content == "claude answering an OpenAI agent"
    assert upstream.last().backend == "anthropic"


@pytest.fixture(scope="module")
def own_key_proxy(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProxyProcess, Path]]:
    """No Anthropic key configured: an intercepted Anthropic client keeps its own."""
    confdir = tmp_path_factory.mktemp("conf-intercept-own")
    with running_proxy(
        upstream, confdir, proxy_key=False, intercept=True, drop=("ANTHROPIC_API_KEY",)
    ) as process:
        yield process, confdir / "mitmproxy-ca-cert.pem"


def test_the_anthropic_sdk_streams_through_interception_with_its_own_key(
    own_key_proxy: tuple[ProxyProcess, Path], upstream: Upstream
) -> None:
    proxy, ca = own_key_proxy
    http = anthropic.DefaultHttpxClient(
        proxy=f"http://127.0.0.1:{proxy.intercept_port}",
        verify=ssl.create_default_context(cafile=str(ca)),
    )
    own_key = UPSTREAM_KEYS["anthropic"]  # the user's own key, which the upstream accepts
    claude = anthropic.Anthropic(api_key=own_key, http_client=http, max_retries=0)
    upstream.enqueue(Reply(text="streamed through the intercepting listener", text_chunks=5))
    with claude.messages.stream(
        model=MODELS["anthropic"], max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
    assert "".join(pieces) == "streamed through the intercepting listener" and len(pieces) > 1
    rec = upstream.last("anthropic")
    assert rec.key == own_key  # the client's own, however its SDK sends it


def test_a_malformed_body_gets_the_protocols_error(
    intercepting: tuple[ProxyProcess, Path], upstream: Upstream
) -> None:
    proxy, ca = intercepting
    http = httpx.Client(
        proxy=f"http://127.0.0.1:{proxy.intercept_port}",
        verify=ssl.create_default_context(cafile=str(ca)),
    )
    r = http.post(
        "https://api.anthropic.com/v1/messages",
        content=b'{"model": "claude-x", "messages": "not a list"',
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert not upstream.requests


def test_other_hosts_pass_through_untouched(
    intercepting: tuple[ProxyProcess, Path], upstream: Upstream, tmp_path: Path
) -> None:
    """A TLS server that is not an LLM API: the client sees the server's own certificate (the
    connection is not decrypted), gets its bytes as sent, and no usage row is written."""
    import http.server
    import threading

    proxy, _ = intercepting
    cert, key = self_signed(tmp_path)
    payload = b'{"not": "an llm", "bytes": "\\u00e9 exactly as sent"}'

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        trust_only_the_server = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(
            proxy=f"http://127.0.0.1:{proxy.intercept_port}", verify=trust_only_the_server
        ) as http_client:
            r = http_client.post(
                f"https://localhost:{port}/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert r.status_code == 200 and r.content == payload
        assert not upstream.requests
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def tls_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ProxyProcess, Path, Upstream]]:
    """The API hosts mapped to a TLS test upstream (`https://localhost`), whose certificate the
    proxy trusts (`ssl_verify_upstream_trusted_ca`); no Anthropic key configured, so the client's
    own key goes through."""
    tmp = tmp_path_factory.mktemp("tls-upstream")
    cert, key = self_signed(tmp)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    tls_upstream = Upstream(host="localhost", ssl_context=context)
    tls_upstream.keys.update(UPSTREAM_KEYS)
    tls_upstream.start()
    confdir = tmp_path_factory.mktemp("conf-tls")
    env = {f"{b.upper()}_API_BASE_URL": tls_upstream.base_url(b) for b in UPSTREAM_KEYS}  # type: ignore[arg-type]
    try:
        with running_proxy(
            tls_upstream,
            confdir,
            proxy_key=False,
            intercept=True,
            env=env,
            drop=("ANTHROPIC_API_KEY",),
            extra=[f"ssl_verify_upstream_trusted_ca={cert}"],
        ) as process:
            yield process, confdir / "mitmproxy-ca-cert.pem", tls_upstream
    finally:
        tls_upstream.stop()


def test_through_interception_to_a_tls_upstream(
    tls_setup: tuple[ProxyProcess, Path, Upstream],
) -> None:
    proxy, ca, tls_upstream = tls_setup
    http = anthropic.DefaultHttpxClient(
        proxy=f"http://127.0.0.1:{proxy.intercept_port}",
        verify=ssl.create_default_context(cafile=str(ca)),
    )
    claude = anthropic.Anthropic(api_key=UPSTREAM_KEYS["anthropic"], http_client=http, max_retries=0)
    tls_upstream.enqueue(Reply(text="over TLS both ways", text_chunks=4))
    with claude.messages.stream(
        model=MODELS["anthropic"], max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert "".join(stream.text_stream) == "over TLS both ways"
    assert tls_upstream.last("anthropic").key == UPSTREAM_KEYS["anthropic"]
    # and an OpenAI agent rerouted by a command in its chat to Gemini (a configured key: the
    # agent's own OpenAI key would mean nothing to another vendor)
    agent = client(proxy, ca)
    session = {"x-session-id": "tls-reroute"}
    agent.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"!/set(model=gemini:{MODELS['gemini']})"}],
        extra_headers=session,
    )
    tls_upstream.enqueue(Reply(text="rerouted over TLS"))
    r = agent.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], extra_headers=session
    )
    assert r.choices[0].message.content == "rerouted over TLS"
    assert tls_upstream.last().backend == "gemini"


def test_a_client_that_does_not_trust_the_ca_fails_and_the_log_says_why(
    intercepting: tuple[ProxyProcess, Path], upstream: Upstream
) -> None:
    proxy, _ = intercepting
    with (
        httpx.Client(proxy=f"http://127.0.0.1:{proxy.intercept_port}") as untrusting,
        pytest.raises(httpx.ConnectError),
    ):
        untrusting.post("https://api.openai.com/v1/chat/completions", json={})
    deadline = time.monotonic() + 5
    while "trust the proxy's CA" not in proxy.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "trust the proxy's CA" in proxy.log() and "llm-proxy ca" in proxy.log()
    assert not upstream.requests
